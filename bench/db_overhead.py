"""Overhead and completeness of the socket tracer on PostgreSQL and Redis.

Two loads, each against a throwaway server of its own on 127.0.0.1 (the
`postgres()` and `redis()` context managers the BPF tests use, in
tests/bpf/peers/servers.py: a fresh cluster in a temporary directory with
trust auth and fsync off, a redis-server without persistence; they are
ended by their own pid on exit, exception or Ctrl-C):

  * pgbench: `pgbench -i -s 1` (100,000 accounts), an untraced warm-up, then
    `pgbench -S -c 8 -j 2 -T <duration> -n` (select-only, simple protocol:
    one `SELECT abalance FROM pgbench_accounts WHERE aid = N;` Query per
    transaction) as user postgres; flat out, or paced by `--rate` (pgbench
    -R: transactions scheduled at that average rate, so the rate the tracer
    keeps up with, losing nothing, can be found);
  * redis-benchmark: `redis-benchmark -c 16 -n N -t get,set --csv`, N sized
    by a short untraced SET run so that an untraced run (SET then GET) takes
    about `--duration` seconds; redis-benchmark sends exactly N of each.

For each, `--rounds` pairs of rounds alternating untraced / traced. Traced:
a collector in this process (bench/tracer_round.py; every process traced, as
by default; `--trace port` limits it to connections with the server's port;
its connector threads at `--nice`, default the collector's), started before
the load (~5 s of compile, load and attach), left after it to decode what
it holds (for at most `--catch-up` seconds, 60 by default), stopped (the
stop pushes the last events), then queried:

  * found %: rows of pgsql_events / redis_events on the server side
    (trace_role 'server', local_port = the server's port) that are the
    load's own (req like 'SELECT abalance FROM pgbench_accounts WHERE aid = %'
    / req_cmd in ('GET', 'SET')) over the transactions pgbench processed /
    the requests redis-benchmark sent (2 N). Client-side rows (the load
    tool's end: trace_role 'client', remote_port = the port) beside them.
    pgbench counts transactions completed before its deadline; up to one per
    client (8) may be answered by the server after it;
  * tracedb_connectors' events, events_lost (by cause when the connector
    tells them) and decode_errors, rows dropped by retention, and the rows
    for the port by role and req_cmd;
  * tracer CPU: this process's user+sys (getrusage, all threads: the
    collector runs in-process, the main thread only waits for the load) from
    the load's start until the collector has stopped, as % of one core over
    the load's wall time, and while the load ran only; the connector
    thread's time on a CPU and waiting for one (schedstat). The BPF programs
    run in the syscalls of the servers and clients and show in their CPU:
    the client's (rusage of the reaped child) per transaction, and
    redis-server's (/proc/<pid>/stat) per request.

Nothing is asserted; the targets of the issue (throughput ratio >= 0.95,
found >= 99.9 %) are printed beside the figures. Needs root, PostgreSQL (with
pgbench), redis-server and redis-benchmark. Bounded in time: the defaults
(2 x 2 rounds of 10 s per load) take about 2.5 minutes when the tracer
keeps up (each catch-up adds up to --catch-up); `--quick` (1 x 2 rounds of
2 s) about 35 s. Ctrl-C kills the load tool at once, then stops the
collector, then the server.

    .venv/bin/python bench/db_overhead.py [--rounds 2] [--duration 10] [--only pgbench|redis]
                                          [--trace all|port|nothing] [--nice N] [--rate TPS] [--catch-up S]
    .venv/bin/python bench/db_overhead.py --quick
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from common import median, print_table
from http_overhead import TARGETS, children_cpu_s, pct, proc_cpu_s, scalar, tracedb_version
from tracer_round import TracerRound, add_catch_up_option, print_losses, requirements_missing, run_round

from tracedb.cli import parse_nice
from tracedb.collector import DEFAULT_NICE

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.bpf.peers.servers
from tests.bpf.peers import servers  # noqa: E402

HOST = "127.0.0.1"
PG_BIN = max(Path("/usr/lib/postgresql").glob("*/bin"), default=Path("/usr/lib/postgresql/15/bin"))
PGBENCH_QUERY = "SELECT abalance FROM pgbench_accounts WHERE aid = "  # then the account and ';'


# -- loads -----------------------------------------------------------------------------


@dataclass
class LoadResult:
    sent: int  # transactions pgbench processed / requests redis-benchmark sent
    throughput: float  # as the tool reports it: tps / requests per second of the whole run
    latency_ms: float  # the tool's average
    wall_s: float
    cpu_s: float  # the tool's own user+sys
    server_cpu_s: float | None  # redis-server's; None for PostgreSQL (a backend per connection)
    per_test: dict[str, float] = field(default_factory=dict)  # redis: SET/GET -> requests/s
    failed: int = 0


def run_tool(cmd: list[str], timeout_s: float) -> tuple[str, float, float]:
    """(stdout, wall s, the child's CPU s) of a load tool; raises if it fails."""
    cpu0, t0 = children_cpu_s(), time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    wall, cpu = time.monotonic() - t0, children_cpu_s() - cpu0
    if done.returncode != 0:
        raise RuntimeError(f"{Path(cmd[0]).name} failed ({done.returncode}): {done.stderr}{done.stdout}")
    return done.stdout, wall, cpu


class Pgbench:
    name = "pgbench"
    table = "pgsql_events"
    unit = "tps"
    what = "transactions"
    own_rows = f"req like '{PGBENCH_QUERY}%'"
    in_flight = 8  # one per client at the deadline

    def __init__(self, port: int, args: argparse.Namespace):
        self.port, self.args = port, args
        self.server_pid = None

    def connection(self) -> list[str]:
        return ["-h", HOST, "-p", str(self.port), "-U", "postgres"]

    def prepare(self) -> None:
        run_tool([str(PG_BIN / "pgbench"), "-i", "-s", "1", "-q", *self.connection(), "postgres"], 120)
        if self.args.warmup > 0:
            self.run(self.args.warmup)

    def pace(self) -> list[str]:
        return ["-R", str(self.args.rate)] if self.args.rate else []

    def describe(self) -> str:
        return (f"pgbench -S -c 8 -j 2 -T {self.args.duration:g} -n {' '.join(self.pace())} (select-only, simple "
                f"protocol, scale 1) against PostgreSQL on {HOST}:{self.port}")

    def run(self, duration: int) -> LoadResult:
        out, wall, cpu = run_tool([str(PG_BIN / "pgbench"), "-S", "-c", "8", "-j", "2", "-T", str(duration), "-n",
                                   *self.pace(), *self.connection(), "postgres"], duration + 60)

        def number(pattern: str) -> float:
            m = re.search(pattern, out)
            if not m:
                raise RuntimeError(f"cannot parse pgbench's output ({pattern}):\n{out}")
            return float(m.group(1))

        return LoadResult(
            sent=int(number(r"number of transactions actually processed: (\d+)")),
            throughput=number(r"tps = ([\d.]+) \(without initial connection time\)"),
            latency_ms=number(r"latency average = ([\d.]+) ms"),
            wall_s=wall, cpu_s=cpu, server_cpu_s=None,
            failed=int(number(r"number of failed transactions: (\d+)")),
        )


class RedisBenchmark:
    name = "redis-benchmark"
    table = "redis_events"
    unit = "req/s"
    what = "requests"
    own_rows = "req_cmd in ('GET', 'SET')"
    in_flight = 0  # redis-benchmark stops after exactly N of each

    def __init__(self, port: int, server_pid: int, args: argparse.Namespace):
        self.port, self.server_pid, self.args = port, server_pid, args
        self.requests = args.requests

    def command(self, tests: str, requests: int) -> list[str]:
        return ["redis-benchmark", "-h", HOST, "-p", str(self.port), "-c", "16", "-n", str(requests),
                "-t", tests, "--csv"]

    def prepare(self) -> None:
        """Size N: a short untraced SET run (also the warm-up)."""
        if self.requests is None:
            out, _, _ = run_tool(self.command("set", 20_000), 60)
            rps = parse_redis_csv(out)["SET"]["rps"]
            self.requests = max(1000, int(round(rps * self.args.duration / 2, -3)))  # SET then GET

    def describe(self) -> str:
        return (f"redis-benchmark -c 16 -n {self.requests:,} -t get,set against redis-server on {HOST}:{self.port} "
                f"(N sized for ~{self.args.duration:g} s untraced)")

    def run(self, duration: int) -> LoadResult:
        server0 = proc_cpu_s(self.server_pid)
        out, wall, cpu = run_tool(self.command("get,set", self.requests), 30 + 12 * duration)
        tests = parse_redis_csv(out)
        if set(tests) != {"GET", "SET"}:
            raise RuntimeError(f"unexpected redis-benchmark output:\n{out}")
        n = self.requests
        seconds = sum(n / t["rps"] for t in tests.values())
        return LoadResult(
            sent=2 * n,
            throughput=2 * n / seconds,
            latency_ms=sum(n / t["rps"] * t["avg_latency_ms"] for t in tests.values()) / seconds,
            wall_s=wall, cpu_s=cpu, server_cpu_s=proc_cpu_s(self.server_pid) - server0,
            per_test={name: t["rps"] for name, t in tests.items()},
        )


def parse_redis_csv(out: str) -> dict[str, dict[str, float]]:
    rows = csv.DictReader(io.StringIO(out.strip()))
    return {row["test"]: {k: float(v) for k, v in row.items() if k != "test"} for row in rows}


# -- rounds ----------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Round(TracerRound):
    load: LoadResult

    @property
    def wall_s(self) -> float:
        return self.load.wall_s

    @property
    def found_pct(self) -> float:
        return 100 * self.counts["server_rows"] / max(1, self.load.sent)


# Socket tracer options of each --trace choice but "all". tracedb's own process
# is never traced, so a pids filter holding only it lets every event go at once.
TRACE_OPTIONS = {"port": lambda load: {"ports": (load.port,)}, "nothing": lambda load: {"pids": (os.getpid(),)}}


def play_round(index: int, traced: bool, load, args: argparse.Namespace) -> Round:
    options = TRACE_OPTIONS[args.trace](load) if args.trace != "all" else None
    result, fields = run_round(traced, lambda: load.run(args.duration), options, args.nice,
                               lambda c: count_rows(c, load), args.catch_up)
    return Round(index=index, traced=traced, load=result, **fields)


def count_rows(collector, load) -> dict:
    table, port = load.table, load.port
    server = f"trace_role = 'server' and local_port = {port}"
    client = f"trace_role = 'client' and remote_port = {port}"
    c = {
        "server_rows": scalar(collector, f"select count(*) from {table} where {server} and {load.own_rows}"),
        "client_rows": scalar(collector, f"select count(*) from {table} where {client} and {load.own_rows}"),
        "server_conns": scalar(collector, f"select count(distinct conn_id) from {table} "
                                          f"where {server} and {load.own_rows}"),
        "by_cmd": collector.query(
            f"select trace_role, req_cmd, {load.own_rows} as own, count(*) as n from {table} "
            f"where local_port = {port} or remote_port = {port} group by all order by all").to_pylist(),
    }
    return c


def run_load(load, args: argparse.Namespace) -> list[Round]:
    load.prepare()
    print(f"\n== {load.name}: {load.describe()}; {args.rounds} x (untraced, traced"
          f"{'' if args.trace == 'all' else ', tracing ' + args.trace})", file=sys.stderr)
    rounds: list[Round] = []
    for _ in range(args.rounds):
        for traced in (False, True):
            r = play_round(len(rounds) + 1, traced, load, args)
            rounds.append(r)
            extra = f", tracer CPU {r.tracer_pct:.1f} %, found {r.found_pct:.3f} %" if traced else ""
            print(f"  {load.name} round {r.index} {r.mode}: {r.load.throughput:,.0f} {load.unit}{extra}",
                  file=sys.stderr)
    return rounds


# -- printing ----------------------------------------------------------------------------


def print_load(load, rounds: list[Round]) -> None:
    print(f"\n== {load.name}: {load.describe()}")
    headers = ["round", "mode", load.unit, load.what, "latency avg ms", "client CPU us/op"]
    if rounds[0].load.per_test:
        headers[3:3] = [f"{t} req/s" for t in rounds[0].load.per_test]
    if rounds[0].load.server_cpu_s is not None:
        headers.append("server CPU us/op")
    headers += ["CPUs busy", "tracer CPU %", "failed"]
    rows = []
    for r in rounds:
        x = r.load
        row = [r.index, r.mode, f"{x.throughput:,.0f}", *(f"{v:,.0f}" for v in x.per_test.values()),
               f"{x.sent:,}", f"{x.latency_ms:.3f}", f"{x.cpu_s / x.sent * 1e6:.1f}"]
        if x.server_cpu_s is not None:
            row.append(f"{x.server_cpu_s / x.sent * 1e6:.1f}")
        row += [f"{r.machine_busy:.2f}", pct(r.tracer_pct) if r.traced else "-", x.failed]
        rows.append(row)
    print_table(headers, rows)

    traced = [r for r in rounds if r.traced]
    print(f"\nTraced rounds: the load's rows in {load.table} for port {load.port} vs the {load.what} "
          f"{load.name} counted" + (f" (up to {load.in_flight} may be answered after its deadline)"
                                    if load.in_flight else ""))
    print_table(["round", load.what, "server rows", "found %", "server - sent", "client rows", "client - sent",
                 "server conns", "events", "events lost", "decode errors", "rows dropped"],
                [[r.index, f"{r.load.sent:,}", f"{r.counts['server_rows']:,}", pct(r.found_pct, 3),
                  f"{r.counts['server_rows'] - r.load.sent:+,}", f"{r.counts['client_rows']:,}",
                  f"{r.counts['client_rows'] - r.load.sent:+,}", r.counts["server_conns"],
                  f"{r.counts['events']:,}", f"{r.counts['events_lost']:,}", f"{r.counts['decode_errors']:,}",
                  r.counts["rows_dropped"]] for r in traced])

    print_losses(traced)

    print(f"\n{load.table} for port {load.port} by role and req_cmd (own = the load's own statement or "
          f"command), per traced round")
    keys = sorted({(s["trace_role"], s["req_cmd"], s["own"]) for r in traced for s in r.counts["by_cmd"]},
                  key=lambda k: (k[0], not k[2], k[1]))
    per_round = [{(s["trace_role"], s["req_cmd"], s["own"]): s["n"] for s in r.counts["by_cmd"]} for r in traced]
    print_table(["trace_role", "req_cmd", "own", *(f"round {r.index}" for r in traced)],
                [[k[0], k[1], "yes" if k[2] else "no", *(f"{rc.get(k, 0):,}" for rc in per_round)] for k in keys])

    print(f"\nCollector (this process): start = compile + load + attach before {load.name}; catch-up = after it, "
          f"until nothing waited to be decoded (--catch-up at most); stop = last flush + detach; tracer CPU "
          f"while the load ran and until stopped (% of one core over the load's wall time); its connector thread while the load ran: on a CPU / runnable but waiting (schedstat)")
    print_table(["round", "start s", "catch-up s", "stop s", "CPU during load %", "CPU load..stopped %",
                 "thread on CPU s", "thread waiting s", "us/event"],
                [[r.index, f"{r.start_s:.2f}", f"{r.catch_up_s:.1f}", f"{r.stop_s:.2f}", pct(r.tracer_load_pct),
                  pct(r.tracer_pct), f"{r.thread_run_s:.2f}", f"{r.thread_wait_s:.2f}",
                  f"{r.us_per_event:.1f}"] for r in traced])


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def summary_rows(load, rounds: list[Round]) -> list[list[str]]:
    untraced = [r for r in rounds if not r.traced]
    traced = [r for r in rounds if r.traced]
    target = TARGETS["throughput"]

    def ratio_row(label: str, get) -> list[str]:
        u, t = median([get(r) for r in untraced]), median([get(r) for r in traced])
        return [label, f"{u:,.0f}", f"{t:,.0f}", f"{t / u:.3f}", f">= {target}: {verdict(t / u >= target)}"]

    rows = [ratio_row(f"{load.name} throughput ({load.unit})", lambda r: r.load.throughput)]
    for test in rounds[0].load.per_test:
        rows.append(ratio_row(f"  {test} (req/s)", lambda r, test=test: r.load.per_test[test]))
    lat_u, lat_t = median([r.load.latency_ms for r in untraced]), median([r.load.latency_ms for r in traced])
    rows.append([f"{load.name} latency average (ms)", f"{lat_u:.3f}", f"{lat_t:.3f}", f"{lat_t / lat_u:.3f}", "-"])
    sent = sum(r.load.sent for r in traced)
    found = 100 * sum(r.counts["server_rows"] for r in traced) / sent
    found_min = min(r.found_pct for r in traced)
    client = 100 * sum(r.counts["client_rows"] for r in traced) / sent
    rows += [
        [f"{load.what} found in {load.table}, server side (%)", "-", "-",
         f"{found:.3f} (worst round {found_min:.3f})",
         f">= {TARGETS['found']}: {verdict(found_min >= TARGETS['found'])}"],
        [f"{load.what} found in {load.table}, client side (%)", "-", "-", f"{client:.3f}", "-"],
        ["tracer CPU, load start..collector stopped (% of one core)", "-",
         pct(median([r.tracer_pct for r in traced])), "-", "-"],
        ["tracer CPU, while the load ran only (% of one core)", "-",
         pct(median([r.tracer_load_pct for r in traced])), "-", "-"],
        ["events lost (sum)", "-", f"{sum(r.counts['events_lost'] for r in traced):,}", "-", "0"],
        ["decode errors (sum)", "-", f"{sum(r.counts['decode_errors'] for r in traced):,}", "-", "0"],
    ]
    return rows


# -- main ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=None, help="rounds of each mode per load (default 2; --quick 1)")
    parser.add_argument("--duration", type=int, default=None,
                        help="seconds of load per round (default 10; --quick 2)")
    parser.add_argument("--quick", action="store_true", help="a sanity run: 1 x (untraced, traced) of 2 s per load")
    parser.add_argument("--only", choices=("pgbench", "redis"), help="run one load only")
    parser.add_argument("--trace", choices=("all", "port", "nothing"), default="all",
                        help="what traced rounds trace: every process (default); connections with the server's "
                             "port only (SocketTracerOptions.ports); nothing, every probe attached but each event "
                             "filtered out in the kernel at its first check: the floor of the design's cost")
    parser.add_argument("--nice", type=parse_nice, default=DEFAULT_NICE, metavar="N|idle",
                        help=f"the collector's nice (its connector threads' niceness above this process's, or idle; "
                             f"default {DEFAULT_NICE}, the collector's own default)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untraced pgbench seconds before the rounds (default 2; --quick 1; 0: none)")
    add_catch_up_option(parser)
    parser.add_argument("--rate", type=int, default=None,
                        help="pace pgbench at this many transactions/s (pgbench -R; default: flat out)")
    parser.add_argument("--requests", type=int, default=None,
                        help="redis-benchmark -n (default: sized for --duration by a short SET run)")
    args = parser.parse_args()
    quick = args.quick
    args.rounds = args.rounds if args.rounds is not None else (1 if quick else 2)
    args.duration = args.duration if args.duration is not None else (2 if quick else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if quick else 2)
    if args.rounds < 1 or args.duration <= 0 or any(n is not None and n < 1 for n in (args.requests, args.rate)):
        parser.error("--rounds, --duration, --requests and --rate must be positive")
    tools = {"pgbench": [str(PG_BIN / "pgbench")], "redis": ["redis-server", "redis-benchmark"]}
    if requirements_missing("db_overhead", [t for name in tools if args.only in (None, name) for t in tools[name]]):
        return 2

    version = tracedb_version()
    print(f"tracedb {version}; {os.cpu_count()} CPUs; {args.rounds} x (untraced, traced) of {args.duration:g} s "
          f"per load{'' if args.trace == 'all' else '; tracing ' + args.trace}; collector nice {args.nice}")
    results = []
    if args.only in (None, "pgbench"):
        with servers.postgres() as (_, port):
            load = Pgbench(port, args)
            results.append((load, run_load(load, args)))
    if args.only in (None, "redis"):
        with servers.redis() as (proc, port):
            load = RedisBenchmark(port, proc.pid, args)
            results.append((load, run_load(load, args)))

    for load, rounds in results:
        print_load(load, rounds)
    print("\nSummary (medians over rounds; ratios traced / untraced)")
    print_table(["figure", "untraced", "traced", "ratio / value", "target"],
                [row for load, rounds in results for row in summary_rows(load, rounds)])
    if tracedb_version() != version:
        print(f"\nwarning: tracedb's code changed during the run ({version} -> {tracedb_version()}): "
              "each traced round compiled the C as it was then")
    return 0


if __name__ == "__main__":
    sys.exit(main())
