"""Running a schedule: binding at start, one thread per query, the status table.

Start-up (`Scheduler(...)`, before the collector starts) binds every query
against the live engine, which refuses unknown tables and columns without
reading a row, and opens its sink (a table sink creates its table, so later
queries in the file may read it). Any problem is a `ScheduleError` with the
file and line.

Timing. All queries share the scheduler's start time T. Run k (k = 1, 2,
...) of a query with interval I is due at T + k*I + SETTLE_S (see Windows):
deadlines come from the start, never from the previous run's end, so runs do
not drift. Each query
has a thread of its own (one per query, rather than a smaller pool, so that
no query ever waits for another's worker). A run still going when the next
deadline passes makes that deadline skipped and counted as an overrun, never
queued; the query then waits for the next deadline ahead.

Windows. Run k covers [end of the last successful run's window, T + k*I):
after a failure or an overrun the next window is wider, so no stretch of
time is left out. The first window starts at T. The SQL can use the bounds
as `$window_start` and `$window_end` (TIMESTAMPTZ), as in
`where time_ >= $window_start and time_ < $window_end`. Connectors hand rows
to the store about once a second, after the rows' time, so run k starts
SETTLE_S after its window ends (at T + k*I + SETTLE_S): by then the window's
rows are in the store and a per-window summary counts all of them.

Queries run on their thread's own cursor with a store snapshot taken at the
start of each run, so collection is never blocked by a query; the store's
lock is held only while the snapshot is taken.

Reporting. Each failure and each overrun is a line on stderr, and the
`tracedb_schedule` table (schemas/tracedb_schedule.toml) counts runs,
failures, overruns and rows emitted per query.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from tracedb.connectors.registry import connectors
from tracedb.schedule.config import Schedule, ScheduledQuery
from tracedb.schedule.differential import changes
from tracedb.schedule.sinks import SINKS, Emission, SinkContext
from tracedb.schema import get_schema
from tracedb.storage import QueryEngine, QueryError

STATUS_TABLE = "tracedb_schedule"
STATEMENT = "tracedb_scheduled"  # prepared statement name, one per cursor, so per query thread
STOP_GRACE_S = 5.0  # how long stop() waits for runs under way
SETTLE_S = 1.5  # a connector's push period (1 s) and some slack


def _now_us() -> int:
    return time.time_ns() // 1000


@dataclass(frozen=True)
class Cadence:
    """Deadlines of one query: start + k * interval, on both clocks."""

    start_mono: float  # time.monotonic() when runs would be due for k = 0: what threads wait on
    start_us: int  # wall clock when the first window opens: what windows are in
    interval_s: float

    def due(self, index: int) -> float:
        return self.start_mono + index * self.interval_s

    def wall_us(self, index: int) -> int:
        return self.start_us + round(index * self.interval_s * 1e6)

    def next_index(self, index: int, now_mono: float) -> int:
        """The next deadline after run `index` ends at `now_mono`: the first not yet passed."""
        passed = int((now_mono - self.start_mono) // self.interval_s)
        return max(index + 1, passed + 1)


@dataclass
class QueryStats:
    runs: int = 0
    failures: int = 0
    overruns: int = 0
    rows_emitted: int = 0
    last_run_us: int | None = None
    last_duration_ms: float | None = None
    last_error: str = ""
    next_run_us: int | None = None


def execute(engine: QueryEngine, sql: str, parameters: frozenset[str], window: tuple[int, int]) -> pa.Table:
    """Run one SELECT, its $window_start/$window_end bound as prepared-statement parameters."""
    values = dict(zip(("window_start", "window_end"), window))
    arguments = ", ".join(f"{p} := make_timestamptz({values[p]})" for p in sorted(parameters))
    call = f"EXECUTE {STATEMENT}({arguments})" if arguments else f"EXECUTE {STATEMENT}"
    return engine.query(f"PREPARE {STATEMENT} AS\n{sql}\n;\n{call}")


def bind(engine: QueryEngine, query: ScheduledQuery) -> pa.Schema:
    """The query's result schema, planned against the live tables; LIMIT 0 reads nothing."""
    now = _now_us()
    try:
        empty = execute(engine, f"SELECT * FROM (\n{query.sql}\n) LIMIT 0", query.parameters, (now, now))
    except QueryError as e:
        raise query.where.error(f"{e}{_not_collected(str(e), engine)}", "sql") from None
    return empty.schema


def _not_collected(message: str, engine: QueryEngine) -> str:
    """A hint when the missing table is a tracedb table whose connector is not running."""
    for cls in connectors().values():
        for table in cls.tables:
            if table not in engine.store.table_names and re.search(rf"\b{table}\b", message):
                return f"\n(table {table} comes from the {cls.name} connector, which is not running: see --sources)"
    return ""


def _describe(error: Exception) -> str:
    return str(error) if isinstance(error, QueryError) else f"{type(error).__name__}: {error}"


class QueryJob:
    """One scheduled query: its sink, what it returned last, its counters."""

    def __init__(self, query: ScheduledQuery, engine: QueryEngine, context: SinkContext, log: Callable[[str], None]):
        self.query, self.engine, self._log = query, engine, log
        self.sink = SINKS[query.sink](query, bind(engine, query), context)
        self.stats = QueryStats()
        self.window_start_us = 0  # set by the scheduler's start
        self.previous: pa.Table | None = None  # last successful result, for differential runs
        self.counter = 0
        self.lock = threading.Lock()  # stats are read by the status table from other threads

    def run(self, window_end_us: int) -> None:
        """Run once for the window ending at `window_end_us`; a failure is counted and logged."""
        started, run_time_us = time.monotonic(), _now_us()
        window = (self.window_start_us, window_end_us)
        try:
            result = execute(self.engine, self.query.sql, self.query.parameters, window)
            emission = self._emission(result, run_time_us, window)
            self.sink.emit(emission)
        except Exception as e:  # whatever the query or its sink raised: reported, the schedule goes on
            self._finish(started, run_time_us, error=_describe(e))
            return
        # Only an emitted result moves the window and the differential base on.
        self.previous, self.window_start_us = result, window_end_us
        self.counter += 1
        self._finish(started, run_time_us, rows=emission.num_rows)

    def _emission(self, result: pa.Table, run_time_us: int, window: tuple[int, int]) -> Emission:
        if self.query.style == "snapshot":
            rows, actions = result, ["snapshot"] * result.num_rows
        else:
            added, removed = changes(self.previous, result)
            rows = pa.concat_tables([removed, added])
            actions = ["removed"] * removed.num_rows + ["added"] * added.num_rows
        return Emission(self.query.name, run_time_us, *window, self.counter, rows, actions)

    def _finish(self, started: float, run_time_us: int, rows: int = 0, error: str = "") -> None:
        with self.lock:
            s = self.stats
            s.runs += 1
            s.rows_emitted += rows
            s.last_run_us, s.last_duration_ms = run_time_us, (time.monotonic() - started) * 1000
            s.last_error = error
            s.failures += bool(error)
        if error:
            self._log(f"scheduled query {self.query.name} failed: {error.splitlines()[0]}")

    def overran(self, skipped: int) -> None:
        with self.lock:
            self.stats.overruns += skipped
        self._log(
            f"scheduled query {self.query.name} overran its {self.query.interval_s:g} s interval: "
            f"{skipped} run{'s' if skipped > 1 else ''} skipped"
        )

    def status_row(self, now_us: int) -> dict:
        with self.lock:
            s = self.stats
            return {
                "time_": now_us,
                "name": self.query.name,
                "interval_s": self.query.interval_s,
                "style": self.query.style,
                "sink": self.query.sink,
                "runs": s.runs,
                "failures": s.failures,
                "overruns": s.overruns,
                "rows_emitted": s.rows_emitted,
                "last_run": s.last_run_us,
                "last_duration_ms": s.last_duration_ms,
                "last_error": s.last_error,
                "next_run": s.next_run_us,
            }


class Scheduler:
    """Runs a checked schedule against an engine: `with Scheduler(schedule, engine): ...`."""

    def __init__(
        self,
        schedule: Schedule,
        engine: QueryEngine,
        log: Callable[[str], None] | None = None,
        stdout=None,
        settle_s: float = SETTLE_S,
    ):
        self.settle_s = settle_s
        self._log = log or (lambda message: print(f"tracedb: {message}", file=sys.stderr, flush=True))
        self.jobs: list[QueryJob] = []
        engine.add_virtual_table(STATUS_TABLE, self.status)
        self.context = SinkContext(engine, stdout)
        try:
            for query in schedule.queries:  # in file order: a query may read the table sink of one above it
                self.jobs.append(QueryJob(query, engine, self.context, self._log))
        except BaseException:
            self.context.close()
            raise
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> Scheduler:
        start_mono, start_us = time.monotonic(), _now_us()
        for job in self.jobs:
            job.window_start_us = start_us
            cadence = Cadence(start_mono + self.settle_s, start_us, job.query.interval_s)
            thread = threading.Thread(
                target=self._drive, args=(job, cadence), name=f"tracedb-schedule-{job.query.name}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
        return self

    def stop(self) -> None:
        """Stop scheduling; runs under way get STOP_GRACE_S to finish, then are left behind."""
        self._stop.set()
        deadline = time.monotonic() + STOP_GRACE_S
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                self._log(f"{thread.name} still running at exit; its result is dropped")
        self.context.close()

    def __enter__(self) -> Scheduler:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _drive(self, job: QueryJob, cadence: Cadence) -> None:
        index = 1
        while True:
            job.stats.next_run_us = cadence.wall_us(index)
            if self._stop.wait(max(0.0, cadence.due(index) - time.monotonic())):
                job.stats.next_run_us = None
                return
            job.run(cadence.wall_us(index))
            following = cadence.next_index(index, time.monotonic())
            if following > index + 1:
                job.overran(following - index - 1)
            index = following

    def status(self) -> pa.Table:
        now_us = _now_us()
        rows = [job.status_row(now_us) for job in self.jobs]
        return pa.Table.from_pylist(rows, schema=get_schema(STATUS_TABLE).arrow_schema)
