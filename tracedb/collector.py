"""The collector: runs connectors into the store and answers SQL over it.

    with tracedb.Collector(sources=["procfs"]) as c:
        print(c.query("select comm, max(rss_bytes) from process_stats group by comm"))

Each connector runs in a thread of its own on its two clocks (sample, push).
A connector that cannot run on this node is reported and skipped; one that
fails while running is stopped and reported; the others keep going. Stopping
the collector (leaving the `with`, `stop()`, or the process ending) stops every
connector, which detaches its probes.

Connector threads run nicer than the rest of the process (`nice`, default
DEFAULT_NICE): on a busy node the traced applications and the person at the
REPL come first, and a decoder that falls behind delays its rows
(tracedb_connectors.events_waiting) rather than take the applications' CPU.
Threads a connector starts itself in `start()` keep the process's priority:
the socket tracer's ring drain, cheap, which keeps the kernel's rings from
overflowing while its decoder waits; past its backlog's bound, events are
lost and counted in tracedb_connectors.events_lost. The gain
is real but modest (bench/http_overhead.py, nginx + wrk paced at ~11k
requests/s, both ends traced, 2 CPUs, every request found either way):
throughput ratio 0.90 at the same priority, 0.92 at nice 10; p99 latency
x6.6 and x5.2. Most of the latency the decoder added came from its keeping
a CPU for a whole time slice, or on a PREEMPT_NONE kernel until the next
tick, which niceness does not change: the socket tracer offers its CPU
between small steps of decoding instead (its connector module).

`nice="idle"` puts them in SCHED_IDLE instead: they run only on CPU time no
other thread wants, and any woken thread takes their CPU at once. At the
paced ~11.8k requests/s that gave throughput 1.04, p99 within the untraced
rounds' spread and every request found (1 % of nginx's and wrk's wakeups
waiting over 32 us, 8 % at nice 10); but a node with no idle CPU leaves
the decoder none, so it is not the default.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa

from tracedb.connectors.base import Connector, Unavailable
from tracedb.connectors.registry import resolve_sources
from tracedb.kernel import doctor
from tracedb.schema import TableSchema, get_schema
from tracedb.storage import QueryEngine, Retention, TableStore
from tracedb.storage.store import STATS_TABLE

CONNECTORS_TABLE = "tracedb_connectors"
DEFAULT_NICE = 10  # added to the process's niceness in each connector thread
IDLE = "idle"  # the `nice` that puts connector threads in SCHED_IDLE


class EnvironmentNotReady(RuntimeError):
    """A requirement of the selected connectors is missing; the message says how to fix it."""


@dataclass
class ConnectorRun:
    """One connector inside the collector, and what became of it."""

    connector: Connector
    state: str = "starting"
    detail: str = ""
    last_push_us: int | None = None
    thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.connector.name


class Collector:
    def __init__(
        self,
        sources: list[str] | None = None,
        retention: Retention | None = None,
        per_table_retention: dict[str, Retention] | None = None,
        log: Callable[[str], None] | None = None,
        connector_options: dict[str, dict] | None = None,
        nice: int | str = DEFAULT_NICE,
    ):
        if nice != IDLE and not (isinstance(nice, int) and 0 <= nice <= 19):
            raise ValueError(f"nice must be in 0..19 or {IDLE!r}, got {nice!r}")
        self.nice = nice
        self.connector_classes = resolve_sources(sources)
        self.connector_options = connector_options or {}
        unknown = set(self.connector_options) - {cls.name for cls in self.connector_classes}
        if unknown:
            raise ValueError(f"options given for connectors not running: {', '.join(sorted(unknown))}")
        tables = [t for cls in self.connector_classes for t in cls.tables]
        self.store = TableStore([get_schema(t) for t in tables], retention, per_table_retention)
        self.engine = QueryEngine(self.store, {CONNECTORS_TABLE: self.status})
        self.runs: list[ConnectorRun] = []
        self._stop = threading.Event()
        self._listeners: dict[str, list[Callable[[pa.RecordBatch], None]]] = defaultdict(list)
        self._log = log or (lambda message: print(f"tracedb: {message}", file=sys.stderr))

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> Collector:
        self._check_environment()
        try:
            for cls in self.connector_classes:
                self.runs.append(self._start_connector(cls))
        except BaseException:
            self.stop()
            raise
        return self

    def _check_environment(self) -> None:
        if not any(cls.needs_bpf for cls in self.connector_classes):
            return
        problems = doctor.preflight()
        if problems:
            lines = [f"- {p.what}\n  fix: {p.fix}" for p in problems]
            raise EnvironmentNotReady("cannot start the BPF connectors:\n" + "\n".join(lines))

    def _start_connector(self, cls: type[Connector]) -> ConnectorRun:
        run = ConnectorRun(cls(**self.connector_options.get(cls.name, {})))
        try:
            run.connector.start()
        except Unavailable as e:
            run.connector.stop()
            run.state, run.detail = "skipped", str(e)
            self._log(f"{run.name} skipped: {e}")
            return run
        run.state = "running"
        run.thread = threading.Thread(target=self._drive, args=(run,), name=f"tracedb-{run.name}", daemon=True)
        run.thread.start()
        _lower_priority(run.thread.native_id, self.nice)
        return run

    def stop(self) -> None:
        """Stop every connector (their last rows are pushed) and detach all probes."""
        self._stop.set()
        for run in self.runs:
            if run.thread is not None:
                run.thread.join()
        for run in self.runs:
            run.connector.stop()
            if run.state == "running":
                run.state = "stopped"

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> list[ConnectorRun]:
        return [r for r in self.runs if r.state == "running"]

    # -- the connector threads ---------------------------------------------

    def _drive(self, run: ConnectorRun) -> None:
        c = run.connector
        next_sample = next_push = time.monotonic()
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= next_sample:
                    c.sample()
                    next_sample = _next_tick(next_sample, c.sampling_period_s, now)
                if now >= next_push:
                    self._push(run)
                    next_push = _next_tick(next_push, c.push_period_s, now)
                self._stop.wait(max(0.0, min(next_sample, next_push) - time.monotonic()))
            c.sample()
            self._push(run)
        except Exception as e:
            run.state, run.detail = "failed", f"{type(e).__name__}: {e}"
            self._log(f"{run.name} failed and was stopped: {run.detail}\n{traceback.format_exc()}")
            c.stop()

    def _push(self, run: ConnectorRun) -> None:
        for table, batch in run.connector.flush().items():
            if batch.num_rows == 0:
                continue
            self.store.append(table, batch)
            for listener in self._listeners.get(table, ()):
                listener(batch)
        self.store.enforce_retention()
        run.last_push_us = time.time_ns() // 1000

    # -- queries -------------------------------------------------------------

    def query(self, sql: str) -> pa.Table | None:
        """Run SQL over the tables as they are now; the last statement's rows."""
        return self.engine.query(sql)

    def interrupt(self) -> None:
        """Cancel the queries running now (from another thread: Ctrl-C in the REPL)."""
        self.engine.interrupt()

    def table_schemas(self) -> dict[str, TableSchema]:
        """The schemas of the tables this collector answers for, status tables included."""
        return {name: get_schema(name) for name in (*self.store.table_names, STATS_TABLE, CONNECTORS_TABLE)}

    def on_rows(self, table: str, listener: Callable[[pa.RecordBatch], None]) -> None:
        """Call `listener` (from a connector thread) with every batch appended to `table`."""
        self.store.schema(table)  # raises for a table this collector does not publish
        self._listeners[table].append(listener)

    def status(self) -> pa.Table:
        """The connectors now: the rows of tracedb_connectors."""
        now_us = time.time_ns() // 1000
        rows = [
            {
                "time_": now_us,
                "connector": r.name,
                "tables": ",".join(r.connector.tables),
                "state": r.state,
                "detail": r.detail,
                "events": r.connector.stats.events,
                "events_waiting": r.connector.stats.events_waiting,
                "oldest_waiting": r.connector.stats.oldest_waiting_us,
                "events_lost": r.connector.stats.events_lost,
                "decode_errors": r.connector.stats.decode_errors,
                "last_push": r.last_push_us,
            }
            for r in self.runs
        ]
        return pa.Table.from_pylist(rows, schema=get_schema(CONNECTORS_TABLE).arrow_schema)


def _lower_priority(tid: int, nice: int | str) -> None:
    """Put a thread of this process in SCHED_IDLE, or make it `nice` nicer (Linux keeps a niceness per
    thread; 19 at most)."""
    if nice == IDLE:
        os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
        return
    os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))


def _next_tick(previous: float, period: float, now: float) -> float:
    """The next multiple of `period` after `now`: late ticks are skipped, not bunched."""
    missed = int((now - previous) // period)
    return previous + (missed + 1) * period
