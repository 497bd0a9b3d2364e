"""One round of a tracer benchmark (http_overhead.py, db_overhead.py): a load
run untraced, or traced by a collector started before it and stopped after
it, and what the round measured of the collector and the machine.

A traced round starts `tracedb.Collector(sources=["socket_tracer"])` in this
process (start() returns once the BPF program is compiled, loaded and
attached; the connector must be `running`), runs the load, lets the
collector catch up (until nothing waits to be decoded, at most `--catch-up`
seconds: a collector that keeps running, as on a node, decodes its backlog
after a burst, so stopping it at once would count as lost rows that only
come late), stops it (the stop pushes the last events) and queries it. The
tracer CPU is this process's user+sys (all threads: the collector runs in-process, the main
thread only waits for the load) from the load's start until the collector has
stopped; the BPF programs run in the traced processes' syscalls and show in
their CPU instead.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from common import print_table

import tracedb
from tracedb.storage import Retention

# Large enough that retention never drops rows of a round (checked: rows_dropped).
RETENTION = Retention(max_bytes=8 * 1024**3, max_age_s=3600.0)
CATCH_UP_POLL_S = 0.1  # two sampling ticks: a zero read is from a decode that began after the load
Load = TypeVar("Load")


def requirements_missing(script: str, tools: list[str]) -> bool:
    """Say so (on stderr) if this process is not root or one of `tools` is not installed."""
    if os.geteuid() != 0:
        print(f"{script}: the socket tracer needs root", file=sys.stderr)
        return True
    for tool in tools:
        if shutil.which(tool) is None:
            print(f"{script}: {tool} not found (sudo scripts/setup.sh --test installs it)", file=sys.stderr)
            return True
    return False


def self_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def thread_schedstat(tid: int) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) of a thread of this process."""
    run_ns, wait_ns, _ = Path(f"/proc/self/task/{tid}/schedstat").read_text().split()
    return int(run_ns) / 1e9, int(wait_ns) / 1e9


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already in user
    return total - idle, total


@dataclass(kw_only=True)
class TracerRound:
    """What every round measured; a benchmark's round adds its load's result and gives its wall time."""

    index: int
    traced: bool
    machine_busy: float  # CPUs busy on average while the load ran
    start_s: float = 0.0  # Collector.start(): compile, load, attach
    start_cpu_s: float = 0.0
    catch_up_s: float = 0.0  # after the load, until nothing waited to be decoded (or the limit)
    stop_s: float = 0.0  # Collector.stop() after the load: last flush, detach
    tracer_cpu_s: float = 0.0  # load start .. collector stopped
    tracer_cpu_load_s: float = 0.0  # while the load ran
    thread_run_s: float = 0.0  # the connector thread while the load ran: on a CPU
    thread_wait_s: float = 0.0  # runnable, waiting for a CPU
    counts: dict = field(default_factory=dict)  # the benchmark's row counts, and the connector's figures

    @property
    def wall_s(self) -> float:
        raise NotImplementedError

    @property
    def mode(self) -> str:
        return "traced" if self.traced else "untraced"

    @property
    def tracer_pct(self) -> float:
        """Tracer CPU from the load's start until the collector stopped, % of one core over the load's time."""
        return 100 * self.tracer_cpu_s / self.wall_s

    @property
    def tracer_load_pct(self) -> float:
        """Tracer CPU while the load ran, % of one core."""
        return 100 * self.tracer_cpu_load_s / self.wall_s

    @property
    def us_per_event(self) -> float:
        """Tracer CPU per event it handled (events lost in the kernel cost nothing here; those dropped
        from a full user-space backlog cost their copy out of the ring)."""
        return self.tracer_cpu_s / max(1, self.counts["events"]) * 1e6


def add_catch_up_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--catch-up", type=float, default=60.0, metavar="S",
                        help="after the load, wait at most S seconds for the collector to decode what it holds "
                             "before stopping it (default 60; 0: stop at once, what waits counts as lost)")


def run_round(traced: bool, load: Callable[[], Load], options: dict | None, nice: int | str,
              count_rows: Callable[[tracedb.Collector], dict], catch_up_limit_s: float) -> tuple[Load, dict]:
    """The load's result, and the TracerRound fields the round measured (all but index and traced).

    options: the socket tracer's (None: its defaults); nice: the collector's; count_rows: the
    benchmark's queries of the stopped collector, into `counts` beside the connector's figures;
    catch_up_limit_s: the longest wait for the collector to decode what it holds after the load."""
    collector = None
    fields: dict = {}
    try:
        if traced:
            t0, c0 = time.monotonic(), self_cpu_s()
            collector = tracedb.Collector(sources=["socket_tracer"], retention=RETENTION, nice=nice,
                                          connector_options={"socket_tracer": options} if options else None,
                                          log=lambda m: print(f"  tracedb: {m}", file=sys.stderr))
            collector.start()
            fields.update(start_s=time.monotonic() - t0, start_cpu_s=self_cpu_s() - c0)
            run = collector.runs[0]
            if run.state != "running":
                raise RuntimeError(f"socket_tracer is not running ({run.state}): {run.detail}")
            sched0 = thread_schedstat(run.thread.native_id)
        cpu0, (busy0, total0) = self_cpu_s(), machine_ticks()
        result = load()
        busy1, total1 = machine_ticks()
        fields["machine_busy"] = (os.cpu_count() or 1) * (busy1 - busy0) / max(1, total1 - total0)
        if traced:
            fields["tracer_cpu_load_s"] = self_cpu_s() - cpu0
            if run.state != "running":
                raise RuntimeError(f"socket_tracer stopped during the round ({run.state}): {run.detail}")
            sched1 = thread_schedstat(run.thread.native_id)
            fields.update(thread_run_s=sched1[0] - sched0[0], thread_wait_s=sched1[1] - sched0[1])
            fields["catch_up_s"] = caught_up_after(run.connector, catch_up_limit_s)
            t1 = time.monotonic()
            collector.stop()
            fields.update(stop_s=time.monotonic() - t1, tracer_cpu_s=self_cpu_s() - cpu0)
            fields["counts"] = {**count_rows(collector), **connector_figures(collector)}
        return result, fields
    finally:
        if collector is not None:
            collector.stop()  # no-op after a normal stop; detaches on errors and Ctrl-C


def caught_up_after(connector, limit_s: float) -> float:
    """Seconds until `connector` has nothing left to decode (its stats.events_waiting, as
    tracedb_connectors shows it), or limit_s."""
    t0 = time.monotonic()
    while limit_s > 0:
        time.sleep(CATCH_UP_POLL_S)
        elapsed = time.monotonic() - t0
        if connector.stats.events_waiting == 0 or elapsed >= limit_s:
            return elapsed
    return 0.0


def connector_figures(collector: tracedb.Collector) -> dict:
    """The socket tracer's events, losses (and their causes) and decode errors; rows retention dropped."""
    figures = collector.query("select events, events_lost, decode_errors from tracedb_connectors "
                              "where connector = 'socket_tracer'").to_pylist()[0]
    dropped = collector.query("select sum(rows_dropped) from tracedb_tables").column(0)[0].as_py()
    return {**figures, "rows_dropped": dropped or 0, "losses": collector.runs[0].connector.losses()}


def print_losses(traced: list[TracerRound]) -> None:
    causes = list(traced[0].counts["losses"])
    print("\nEvents lost by cause (the connector's losses())")
    print_table(["round", *causes], [[r.index, *(f"{r.counts['losses'][c]:,}" for c in causes)] for r in traced])
