"""The floor of the socket tracer's cost: what attaching probes costs before
any program of ours does any work.

Every probe mechanism the machines allow for seeing socket syscalls
(../shared/KERNEL.md: no kprobes, no fentry) is attached in turn, each with
programs that return at once, and the same loads run under each:

  * none: nothing attached;
  * empty exit tracepoints: the syscalls:sys_exit_* tracepoints that
    bpf/socket_tracer/socket_tracer.c attaches (read from its source), each
    with an empty program;
  * empty enter+exit tracepoints: the same and the syscalls' sys_enter_*
    ones (what a design saving arguments at the entry adds);
  * tracedb, filtering all: the real socket tracer program, its pids filter
    holding only this process, so every event is dropped at the first check
    (what `http_overhead.py --trace nothing` measures);
  * raw sys_enter+sys_exit: the raw tracepoints every syscall passes, empty
    programs (the alternative: one program seeing every syscall of the node);
  * raw sys_exit only: the same on exit only.

Loads, per mechanism and round, in this order:

  * syscalls: `dd bs=1` from /dev/zero to /dev/null, one read and one write
    per byte: ns per syscall (best of three runs), every syscall one that
    the socket tracer probes;
  * nginx: wrk flat out against nginx serving a 612-byte file
    (http_overhead.py's nginx and wrk): requests/s, p99 latency, and nginx's
    worker + wrk's CPU per request.

Rounds alternate the mechanisms, so a change of the noisy VM's speed hits
them alike. Printed: per mechanism, the median of the rounds and the ratio
to `none`. Needs root, nginx, wrk (scripts/setup.sh --test installs them).
~3 minutes with the defaults.

    .venv/bin/python bench/probe_floor.py [--rounds 3] [--duration 5] [--dd-bytes 1000000]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from common import median, print_table
from http_overhead import Nginx, run_wrk
from tracer_round import requirements_missing

from tracedb.connectors.socket_tracer.connector import SocketTracer

SOURCE = Path(__file__).resolve().parent.parent / "bpf" / "socket_tracer" / "socket_tracer.c"


def socket_tracer_tracepoints() -> list[str]:
    return re.findall(r"TRACEPOINT_PROBE\(syscalls, (sys_\w+)\)", SOURCE.read_text())


def with_enters() -> list[str]:
    """The entry tracepoints of the syscalls whose exits the socket tracer probes."""
    return [tp.replace("sys_exit_", "sys_enter_", 1) for tp in socket_tracer_tracepoints()]


def empty_programs(attach_points: list[str], macro: str) -> str:
    return "\n".join(f"{macro}({point}) {{ return 0; }}" for point in attach_points)


class Attached:
    """A BCC program compiled from `text`, attached on enter, cleaned up on exit."""

    def __init__(self, text: str):
        self.text = text

    def __enter__(self):
        from bcc import BPF
        self.bpf = BPF(text=self.text, cflags=["-w"])
        return self

    def __exit__(self, *exc):
        self.bpf.cleanup()


class TracerFilteringAll:
    """The socket tracer's program, every event filtered out at its first check."""

    def __enter__(self):
        self.tracer = SocketTracer(pids=(os.getpid(),))  # tracedb's own process is never traced
        self.tracer.start()
        return self

    def __exit__(self, *exc):
        self.tracer.stop()


MECHANISMS: dict[str, Callable[[], object]] = {
    "none": contextlib.nullcontext,
    "empty exit tracepoints": lambda: Attached(empty_programs(
        [f"syscalls, {tp}" for tp in socket_tracer_tracepoints()], "TRACEPOINT_PROBE")),
    "empty enter+exit tracepoints": lambda: Attached(empty_programs(
        [f"syscalls, {tp}" for tp in socket_tracer_tracepoints() + with_enters()], "TRACEPOINT_PROBE")),
    "tracedb, filtering all": TracerFilteringAll,
    "raw sys_enter+sys_exit": lambda: Attached(empty_programs(["sys_enter", "sys_exit"], "RAW_TRACEPOINT_PROBE")),
    "raw sys_exit only": lambda: Attached(empty_programs(["sys_exit"], "RAW_TRACEPOINT_PROBE")),
}


@dataclass
class Figures:
    """One mechanism's figures, a value per round."""

    ns_per_syscall: list[float] = field(default_factory=list)
    rps: list[float] = field(default_factory=list)
    p99_us: list[float] = field(default_factory=list)
    cpu_us_per_request: list[float] = field(default_factory=list)  # nginx worker + wrk


def dd_ns_per_syscall(nbytes: int) -> float:
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run(["dd", "if=/dev/zero", "of=/dev/null", "bs=1", f"count={nbytes}"],
                       stderr=subprocess.DEVNULL, check=True, timeout=120)
        best = min(best, (time.perf_counter() - t0) / (2 * nbytes) * 1e9)
    return best


def measure(figures: Figures, nginx: Nginx, args: argparse.Namespace) -> None:
    figures.ns_per_syscall.append(dd_ns_per_syscall(args.dd_bytes))
    cpu0 = nginx.cpu_s()
    wrk = run_wrk(nginx.url(), args, args.duration)
    figures.rps.append(wrk.rps)
    figures.p99_us.append(wrk.percentiles["99%"] * 1e6)
    figures.cpu_us_per_request.append((nginx.cpu_s() - cpu0 + wrk.cpu_s) / max(1, wrk.requests) * 1e6)


def print_figures(results: dict[str, Figures]) -> None:
    base = results["none"]
    base_ns, base_rps, base_p99 = (median(v) for v in (base.ns_per_syscall, base.rps, base.p99_us))
    rows = []
    for name, f in results.items():
        ns, rps, p99, cpu = (median(v) for v in (f.ns_per_syscall, f.rps, f.p99_us, f.cpu_us_per_request))
        rows.append([name, f"{ns:.0f}", f"+{ns - base_ns:.0f}", f"{rps:,.0f}", f"{rps / base_rps:.3f}",
                     f"{p99:.0f}", f"{p99 / base_p99:.2f}", f"{cpu:.1f}"])
    print("\nMedians over the rounds (nginx CPU = worker + wrk, per request)")
    print_table(["mechanism", "ns/syscall", "added", "nginx req/s", "ratio", "p99 us", "ratio", "CPU us/req"], rows)
    print("\nPer round: ns/syscall; req/s")
    for name, f in results.items():
        print(f"  {name:30s} {' '.join(f'{v:.0f}' for v in f.ns_per_syscall)};  "
              f"{' '.join(f'{v:,.0f}' for v in f.rps)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds over every mechanism (default 3)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run (default 5)")
    parser.add_argument("--dd-bytes", type=int, default=1_000_000, help="dd's bytes, one read+write each (default 1M)")
    args = parser.parse_args()
    if args.rounds < 1 or args.duration <= 0 or args.dd_bytes < 1:
        parser.error("--rounds, --duration and --dd-bytes must be positive")
    if requirements_missing("probe_floor", ["nginx", "wrk", "dd"]):
        return 2
    args.threads, args.connections, args.pace_script = 1, 16, None  # http_overhead's wrk defaults, flat out
    results = {name: Figures() for name in MECHANISMS}
    nginx = Nginx(sendfile=True)
    try:
        nginx.start()
        print(f"nginx 127.0.0.1:{nginx.port}, wrk -t1 -c16 -d{args.duration:g}s; dd bs=1 count={args.dd_bytes}; "
              f"{args.rounds} rounds over {len(MECHANISMS)} mechanisms; "
              f"{len(socket_tracer_tracepoints())} syscall tracepoints in {SOURCE.name}")
        run_wrk(nginx.url(), args, 2.0)  # warm-up
        for i in range(args.rounds):
            for name, mechanism in MECHANISMS.items():
                with mechanism():
                    measure(results[name], nginx, args)
                f = results[name]
                print(f"  round {i + 1} {name}: {f.ns_per_syscall[-1]:.0f} ns/syscall, "
                      f"{f.rps[-1]:,.0f} req/s, p99 {f.p99_us[-1]:.0f} us", file=sys.stderr)
    finally:
        nginx.stop()
    print_figures(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
