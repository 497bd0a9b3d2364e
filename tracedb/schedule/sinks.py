"""Where scheduled results go: the sinks, and the two shapes of an emitted row.

A run's rows travel as an `Emission`: the query's own columns plus what the
run was (query name, run time, window, counter, one action per row). Sinks
show it in one of two shapes:

- JSON lines (`stdout`, `jsonl`): one object per row, osquery's result-log
  keys where they fit, the query's columns nested under "columns" with their
  JSON types kept (times as ISO 8601 strings):

      {"name": "top_cpu", "hostIdentifier": "node1",
       "calendarTime": "Tue Nov 21 10:05:00 2023 UTC", "unixTime": 1700561100,
       "counter": 4, "action": "snapshot",
       "windowStart": "2023-11-21T10:04:00+00:00", "windowEnd": "2023-11-21T10:05:00+00:00",
       "columns": {"comm": "java", "cpu_s": 41.2}}

- Flat tables (`parquet`, `table`): the columns of LABELS first, then the
  query's; a query column with one of those names is refused at start.

Sinks are registered by name in SINKS with the one option they take
(`option`: "path", "table" or None); the schedule file is checked against it.
A sink is opened at start, so an unwritable path fails before collection
does, and is written from its query's thread. Files several queries share
(the same jsonl path, stdout) are opened once and written a whole run at a
time under a lock, so lines never interleave.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, TextIO

import pyarrow as pa
import pyarrow.parquet as pq

from tracedb.output import format_jsonl
from tracedb.schema import TIME_TYPE
from tracedb.storage import QueryEngine, QueryError

if TYPE_CHECKING:
    from tracedb.schedule.config import ScheduledQuery

LABELS = pa.schema(
    [
        ("name", pa.string()),
        ("run_time", TIME_TYPE),
        ("window_start", TIME_TYPE),
        ("window_end", TIME_TYPE),
        ("counter", pa.int64()),
        ("action", pa.string()),
    ]
)


@dataclass(frozen=True)
class Emission:
    """What one run of a query emits."""

    name: str
    run_time_us: int
    window_start_us: int
    window_end_us: int
    counter: int  # successful runs of this query before this one: 0 is the first, full result
    rows: pa.Table  # the query's columns
    actions: list[str]  # one per row: snapshot, added or removed

    @property
    def num_rows(self) -> int:
        return self.rows.num_rows

    def labelled(self) -> pa.Table:
        """The flat shape: LABELS columns, then the query's."""
        n = self.num_rows
        values = [self.name, self.run_time_us, self.window_start_us, self.window_end_us, self.counter]
        columns = [pa.array([v] * n, f.type) for v, f in zip(values, LABELS)]
        columns.append(pa.array(self.actions, pa.string()))
        return pa.Table.from_arrays(columns + self.rows.columns, schema=labelled_schema(self.rows.schema))

    def json_lines(self, host: str) -> str:
        n = self.num_rows
        run_time = _datetime(self.run_time_us)
        envelope = {
            "name": pa.array([self.name] * n),
            "hostIdentifier": pa.array([host] * n),
            "calendarTime": pa.array([run_time.strftime("%a %b %d %H:%M:%S %Y UTC")] * n),
            "unixTime": pa.array([self.run_time_us // 1_000_000] * n, pa.int64()),
            "counter": pa.array([self.counter] * n, pa.int64()),
            "action": pa.array(self.actions, pa.string()),
            "windowStart": pa.array([self.window_start_us] * n, TIME_TYPE),
            "windowEnd": pa.array([self.window_end_us] * n, TIME_TYPE),
            "columns": self.rows.to_struct_array(),
        }
        return format_jsonl(pa.table(envelope))


def labelled_schema(result: pa.Schema) -> pa.Schema:
    clashes = [name for name in result.names if name in LABELS.names]
    if clashes:
        raise ValueError(
            f"result column {clashes[0]!r} has the name of a column the sink adds "
            f"({', '.join(LABELS.names)}); rename it in the SQL"
        )
    return pa.schema(list(LABELS) + list(result))


def _datetime(time_us: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(time_us / 1e6, dt.timezone.utc)


class SharedText:
    """A text stream several sinks write to: whole runs, flushed, one at a time."""

    def __init__(self, out: TextIO):
        self.out = out
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        if not text:
            return
        with self._lock:
            self.out.write(text)
            self.out.flush()


class SinkContext:
    """What sinks share: the query engine, stdout, and the jsonl files open."""

    def __init__(self, engine: QueryEngine, stdout: TextIO | None = None):
        self.engine = engine
        self.host = socket.gethostname()
        self.stdout = SharedText(stdout or sys.stdout)
        self._files: dict[Path, SharedText] = {}

    def append_file(self, path: Path) -> SharedText:
        path = path.resolve()
        if path not in self._files:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._files[path] = SharedText(path.open("a"))
        return self._files[path]

    def close(self) -> None:
        for shared in self._files.values():
            shared.out.close()
        self._files.clear()


class Sink:
    """Made at start as `cls(query, result_schema, context)`, which refuses what cannot work
    (with `query.where.error`); then `emit` once per successful run, from the query's thread."""

    name: ClassVar[str]
    option: ClassVar[str | None] = None  # the schedule key this sink reads, if any

    def emit(self, emission: Emission) -> None:
        raise NotImplementedError


SINKS: dict[str, type[Sink]] = {}


def register(cls: type[Sink]) -> type[Sink]:
    SINKS[cls.name] = cls
    return cls


@register
class StdoutSink(Sink):
    name = "stdout"

    def __init__(self, query: ScheduledQuery, result: pa.Schema, context: SinkContext):
        self.out, self.host = context.stdout, context.host

    def emit(self, emission: Emission) -> None:
        self.out.write(emission.json_lines(self.host))


@register
class JsonlSink(StdoutSink):
    name = "jsonl"
    option = "path"

    def __init__(self, query: ScheduledQuery, result: pa.Schema, context: SinkContext):
        self.host = context.host
        try:
            self.out = context.append_file(query.path)
        except OSError as e:
            raise query.where.error(f"cannot open {query.path} for appending: {e.strerror}", "path") from None


@register
class ParquetSink(Sink):
    """DIR/<query>/date=YYYY-MM-DD/<window end>-<counter>.parquet, one file per run that has rows.

    Each file is written under a temporary name and renamed into place, so a
    reader never sees half a file; `date=` lets readers partition by day
    (read_parquet('DIR/*/*/*.parquet', hive_partitioning = true)).
    """

    name = "parquet"
    option = "path"

    def __init__(self, query: ScheduledQuery, result: pa.Schema, context: SinkContext):
        self.directory = query.path / query.name
        try:
            labelled_schema(result)
            self.directory.mkdir(parents=True, exist_ok=True)
        except ValueError as e:
            raise query.where.error(str(e), "sql") from None
        except OSError as e:
            raise query.where.error(f"cannot create {self.directory}: {e.strerror}", "path") from None

    def emit(self, emission: Emission) -> None:
        if emission.num_rows == 0:
            return
        end = _datetime(emission.window_end_us)
        target = self.directory / f"date={end:%Y-%m-%d}" / f"{end:%Y%m%dT%H%M%S.%fZ}-{emission.counter}.parquet"
        target.parent.mkdir(exist_ok=True)
        temporary = target.with_name(f".{target.name}.tmp")
        pq.write_table(emission.labelled(), temporary)
        os.replace(temporary, target)


@register
class TableSink(Sink):
    """A table in the engine's shared database, created at start, appended to each run.

    Being in the shared database it is visible to every cursor: other scheduled
    queries, `-c` statements and the prompt can read it like any table.
    """

    name = "table"
    option = "table"

    def __init__(self, query: ScheduledQuery, result: pa.Schema, context: SinkContext):
        self.table, self.database = query.table, context.engine.database
        try:
            schema = labelled_schema(result)
        except ValueError as e:
            raise query.where.error(str(e), "sql") from None
        if _resolves(context.engine, self.table):
            raise query.where.error(f"a table or view named {self.table!r} exists already; choose another", "table")
        self._insert(schema.empty_table(), f'CREATE TABLE "{self.table}" AS SELECT * FROM __tdb_sink_rows')

    def emit(self, emission: Emission) -> None:
        if emission.num_rows:
            self._insert(emission.labelled(), f'INSERT INTO "{self.table}" SELECT * FROM __tdb_sink_rows')

    def _insert(self, rows: pa.Table, statement: str) -> None:
        # A cursor of its own: sinks write from their query's thread.
        with self.database.cursor() as cursor:
            cursor.register("__tdb_sink_rows", rows)
            cursor.execute(statement)


def _resolves(engine: QueryEngine, table: str) -> bool:
    try:
        engine.query(f'SELECT * FROM "{table}" LIMIT 0')
    except QueryError:
        return False
    return True
