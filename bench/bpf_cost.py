"""Kernel-side cost of the socket tracer: run time of each of its BPF programs per request.

The BPF programs run inside the syscalls of the traced processes, so their
cost shows as CPU of nginx and wrk, never as tracer CPU. This benchmark
turns on the kernel's own accounting (`kernel.bpf_stats_enabled`, restored
afterwards), runs the same load as http_overhead.py (its nginx and wrk,
keep-alive, flat out), with the collector decoding as usual, and prints each
program's runs and nanoseconds per run, then the total per wrk request.

The accounting itself adds two clock reads per run (tens of ns), included in
the figures. With `--trace all` both nginx and wrk are traced, so one request
costs the programs of both ends.

    .venv/bin/python bench/bpf_cost.py [--duration 8] [--trace all|nginx|nothing]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from common import print_table
from http_overhead import TRACED_PIDS, Nginx, run_wrk
from tracer_round import RETENTION, requirements_missing

import tracedb

BPF_STATS = Path("/proc/sys/kernel/bpf_stats_enabled")


def program_runs(bpf) -> dict[str, tuple[int, int]]:
    """(run count, run time ns) of each loaded program of a BCC module, by function name, from fdinfo."""
    runs = {}
    for name, function in bpf.funcs.items():
        info = Path(f"/proc/self/fdinfo/{function.fd}").read_text()
        fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
        runs[name.decode()] = (int(fields["run_cnt"]), int(fields["run_time_ns"]))
    return runs


def measure(nginx: Nginx, args: argparse.Namespace) -> tuple[dict[str, tuple[int, int]], int]:
    """Program runs during one wrk run under a collector, and wrk's requests."""
    options = {"socket_tracer": {"pids": TRACED_PIDS[args.trace](nginx)}} if args.trace != "all" else None
    with tracedb.Collector(sources=["socket_tracer"], retention=RETENTION, connector_options=options) as collector:
        run = collector.runs[0]
        if run.state != "running":
            raise RuntimeError(f"socket_tracer is not running: {run.detail}")
        bpf = run.connector.program.bpf
        before = program_runs(bpf)
        wrk = run_wrk(nginx.url(), args, args.duration)
        after = program_runs(bpf)
    return {name: (after[name][0] - before[name][0], after[name][1] - before[name][1]) for name in after}, wrk.requests


def report(runs: dict[str, tuple[int, int]], requests: int) -> None:
    rows = []
    for name, (count, ns) in sorted(runs.items(), key=lambda item: -item[1][1]):
        if count:
            short = name.removeprefix("tracepoint__syscalls__")
            rows.append([short, f"{count:,}", f"{ns / count:.0f}", f"{ns / requests:.0f}"])
    total_ns = sum(ns for _, ns in runs.values())
    rows.append(["total", f"{sum(c for c, _ in runs.values()):,}", "", f"{total_ns / requests:.0f}"])
    print_table(["program", "runs", "ns / run", "ns / request"], rows)
    print(f"\n{requests:,} wrk requests; BPF programs ran {total_ns / 1e9:.2f} s in all")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of wrk (default 8)")
    parser.add_argument("--connections", type=int, default=16, help="wrk -c (default 16)")
    parser.add_argument("--trace", choices=("all", "nginx", "nothing"), default="all",
                        help="every process (default), nginx's worker only, or nothing (all filtered in the kernel)")
    args = parser.parse_args()
    args.threads, args.pace_script = 1, None
    if requirements_missing("bpf_cost", ["nginx", "wrk"]):
        return 2
    stats_before = BPF_STATS.read_text()
    nginx = Nginx(sendfile=True)
    try:
        nginx.start()
        BPF_STATS.write_text("1")
        runs, requests = measure(nginx, args)
    finally:
        BPF_STATS.write_text(stats_before)
        nginx.stop()
    print(f"nginx + wrk -t1 -c{args.connections} -d{args.duration:g}s, tracing {args.trace}; {os.cpu_count()} CPUs\n")
    report(runs, requests)
    return 0


if __name__ == "__main__":
    sys.exit(main())
