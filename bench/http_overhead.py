"""Overhead and completeness of the socket tracer on a real HTTP server.

Starts its own nginx (master + one worker, listening on 127.0.0.1 only, a
config written into a temporary directory that also holds the served file,
pid, logs and temp paths; `access_log off`; `sendfile on` unless
`--no-sendfile`) and drives it with wrk (`-t1 -c16`, keep-alive, `--latency`)
for `--rounds` pairs of rounds, alternating:

  * untraced: no collector;
  * traced: a collector started before wrk, stopped after it, then queried
    (bench/tracer_round.py), its connector threads at `--nice` (default:
    the collector's).

Per round: wrk's requests/s, completed requests and latency percentiles; nginx
worker CPU per request (/proc/<worker>/stat) and wrk's (rusage of the reaped
child); machine CPU busy (/proc/stat). Traced rounds also give:

  * tracer CPU: this process's CPU time (user+sys, all threads: the collector
    runs in-process, the main thread only waits for wrk) from wrk's start until
    the collector has stopped, as % of one core over wrk's wall time (after
    wrk the collector is left to decode what it holds, for at most
    `--catch-up` seconds, 60 by default, then stopped; its last push decodes
    for at most ~0.5 s more); the compile/attach cost of start()
    separately. The BPF programs themselves run in the syscalls of nginx and
    wrk and show in their CPU, not in this figure;
  * rows of http_events for the nginx port: server side (nginx, trace_role
    'server', local_port = port) and client side (wrk, trace_role 'client',
    remote_port = port), compared with wrk's completed requests. wrk counts
    responses it read completely before its deadline; up to one request per
    connection (16) may be in flight at the end, answered by nginx (so
    traced) but not counted by wrk, or not answered at all;
  * tracedb_connectors' events, events_lost (and its causes, from the
    connector: a kernel ring full, the user-space backlog full, left
    undecoded at stop) and decode_errors, rows dropped by retention
    (tracedb_tables), and conn_stats' byte counts (counted in the kernel at
    every syscall, captured or not) turned into a request count with the
    exact request and response sizes measured before the rounds.

wrk runs flat out by default. `--delay-ms N` paces it instead: each
connection waits N ms before each request (a wrk Lua script's delay()), so
the rate stays under connections / (N ms + latency); rounds at a few paced
rates find the highest one the tracer keeps up with, losing nothing.
`--no-decode` drains the data events from the rings and drops them
undecoded (replacing the connector's _decode_data in this process): what
is left is the kernel's capture and the copy out of the ring, the cost a
decoder of any speed would still have.

`--runqueue` also measures, in every round, how long nginx's and wrk's
threads waited for a CPU once runnable (bench/runqueue.py): the tracer's
share of the latency it adds.

A paced rate is also where `--nice` matters: at the same priority as nginx
and wrk the decoder's bursts delay them; niced it uses idle CPU only.

Nothing is asserted; the targets of the issue are printed beside the figures.
Needs root, nginx and wrk (scripts/setup.sh --test installs them). Bounded in
time: each traced round adds ~4 s of compile, the catch-up (none when the
tracer kept up; at most `--catch-up`) and ~3 s of stop (a last decode of at
most 0.5 s, what is still waiting then being counted as lost, and the
detach), so the defaults take about 2 minutes when the tracer keeps up.
Ctrl-C stops wrk at once, then the collector, then nginx.

    .venv/bin/python bench/http_overhead.py [--rounds 3] [--duration 10] [--no-sendfile]
                                            [--trace all|nginx|nothing]
                                            [--delay-ms N] [--nice N] [--no-decode] [--runqueue]
                                            [--catch-up S]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import median, print_table
from runqueue import RunQueueLatency, Waits
from tracer_round import TracerRound, add_catch_up_option, print_losses, requirements_missing, run_round

import tracedb
from tracedb.cli import parse_nice
from tracedb.collector import DEFAULT_NICE
from tracedb.connectors.socket_tracer.connector import SocketTracer

HOST = "127.0.0.1"
FILE_NAME = "index.html"
FILE_SIZE = 612  # the size of nginx's stock index.html
CLK_TCK = os.sysconf("SC_CLK_TCK")
TARGETS = {"throughput": 0.95, "p99": 1.2, "found": 99.9}

NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
    sendfile {sendfile};
    default_type text/html;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen {host}:{port};
        root {tmp}/www;
    }}
}}
"""


# -- nginx -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def page(size: int) -> bytes:
    head = b"<!DOCTYPE html>\n<html>\n<head><title>tracedb benchmark</title></head>\n<body>\n"
    tail = b"</body>\n</html>\n"
    filler = (b"<p>" + b"x" * 72 + b"</p>\n") * (size // 80 + 1)
    return head + filler[: size - len(head) - len(tail)] + tail


class Nginx:
    """An nginx of our own in a temporary directory; `stop()` ends it by pid."""

    def __init__(self, sendfile: bool):
        self.tmp = Path(tempfile.mkdtemp(prefix="tracedb-bench-nginx-"))
        self.tmp.chmod(0o755)  # the worker runs as nginx's unprivileged user and reads the file
        self.port = free_port()
        self.sendfile = sendfile
        self.proc: subprocess.Popen | None = None
        self.worker_pid: int | None = None

    def start(self) -> None:
        (self.tmp / "www").mkdir()
        (self.tmp / "www" / FILE_NAME).write_bytes(page(FILE_SIZE))
        conf = self.tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=self.tmp, host=HOST, port=self.port,
                                          sendfile="on" if self.sendfile else "off"))
        self.proc = subprocess.Popen(
            ["nginx", "-c", str(conf), "-p", f"{self.tmp}/", "-e", str(self.tmp / "error.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited ({self.proc.returncode}): {self.proc.stderr.read().decode()}")
            workers = children(self.proc.pid)
            if workers and accepts(self.port):
                self.worker_pid = workers[0]
                return
            time.sleep(0.05)
        raise RuntimeError("nginx did not start listening within 10 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)  # the master stops its worker
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                for pid in [*children(self.proc.pid), self.proc.pid]:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self.proc.wait(timeout=5)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def url(self) -> str:
        return f"http://{HOST}:{self.port}/{FILE_NAME}"

    def wrk_request(self) -> bytes:
        """The request wrk sends (wrk 4.x without a script)."""
        return f"GET /{FILE_NAME} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n\r\n".encode()

    def response_size(self) -> int:
        """Bytes of the response to wrk's request (headers and body)."""
        with socket.create_connection((HOST, self.port), timeout=5) as s:
            s.sendall(self.wrk_request())
            data = b""
            while b"\r\n\r\n" not in data:
                data += s.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            status_line = head.split(b"\r\n", 1)[0]
            if not status_line.startswith(b"HTTP/1.1 200 "):
                raise RuntimeError(f"nginx answered {status_line!r}; see {self.tmp}/error.log")
            length = int(re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head).group(1))
            while len(body) < length:
                body += s.recv(65536)
            return len(head) + 4 + length

    def cpu_s(self) -> float:
        return proc_cpu_s(self.worker_pid)


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of proc(5)


def children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def tracedb_version() -> str:
    """The commit of the tracedb being measured, `-dirty` if its code (tracedb/, bpf/, schemas/) has
    uncommitted changes."""
    root = Path(tracedb.__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()

    try:
        dirty = git("status", "--porcelain", "--", "tracedb", "bpf", "schemas")
        return git("rev-parse", "--short", "HEAD") + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# -- wrk -------------------------------------------------------------------------------

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    percentiles: dict[str, float]  # "50%" .. "99%" -> seconds
    errors: str
    wall_s: float
    cpu_s: float  # wrk's own user+sys


def seconds_of(number: str, unit: str) -> float:
    return float(number) * _UNITS[unit]


def parse_wrk(out: str) -> tuple[int, float, float, dict[str, float], str]:
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h),", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not total or not rps:
        raise RuntimeError(f"cannot parse wrk's output:\n{out}")
    percentiles = {
        f"{m.group(1)}%": seconds_of(m.group(2), m.group(3))
        for m in re.finditer(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$", out, re.M)
    }
    errors = "; ".join(m.group(0).strip() for m in re.finditer(r"^\s*(Socket errors|Non-2xx).*$", out, re.M))
    return int(total.group(1)), seconds_of(total.group(2), total.group(3)), float(rps.group(1)), percentiles, errors


def pace_script(directory: Path, delay_ms: int | None) -> Path | None:
    """A wrk Lua script making each connection wait delay_ms before each request (None: no pacing)."""
    if delay_ms is None:
        return None
    script = directory / "pace.lua"
    script.write_text(f"function delay()\n  return {delay_ms}\nend\n")
    return script


def run_wrk(url: str, args: argparse.Namespace, duration: float) -> WrkResult:
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{duration:g}s", "--latency", url]
    if args.pace_script:
        cmd[-1:-1] = ["-s", str(args.pace_script)]
    cpu0, t0 = children_cpu_s(), time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30, check=False)
    wall, cpu = time.monotonic() - t0, children_cpu_s() - cpu0
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr}{done.stdout}")
    requests, seconds, rps, percentiles, errors = parse_wrk(done.stdout)
    if "99%" not in percentiles:
        raise RuntimeError(f"no latency distribution in wrk's output:\n{done.stdout}")
    return WrkResult(requests, seconds, rps, percentiles, errors, wall, cpu)


# The pids filter of each --trace choice but "all". tracedb's own process is never
# traced, so a filter holding only it lets every event go at the first check.
TRACED_PIDS = {"nginx": lambda nginx: (nginx.worker_pid,), "nothing": lambda nginx: (os.getpid(),)}


# -- rounds ----------------------------------------------------------------------------


@dataclass(kw_only=True)
class Round(TracerRound):
    wrk: WrkResult
    nginx_cpu_s: float
    waits: Waits | None = None  # with --runqueue: nginx's and wrk's waits for a CPU

    @property
    def wall_s(self) -> float:
        return self.wrk.wall_s

    @property
    def cores_needed(self) -> float:
        """Cores the tracer would need to decode every event (handled and lost) as fast as they came."""
        return self.us_per_event * 1e-6 * (self.counts["events"] + self.counts["events_lost"]) / self.wrk.wall_s

    @property
    def found_pct(self) -> float:
        return 100 * self.counts["server_rows"] / max(1, self.wrk.requests)


def count_undecoded(tracer: SocketTracer, events: list[bytes]) -> None:
    """--no-decode's stand-in for SocketTracer._decode_data: the events are counted, then dropped."""
    tracer.stats.events += len(events)


def play_round(index: int, traced: bool, nginx: Nginx, args: argparse.Namespace,
               run_queue: RunQueueLatency | None) -> Round:
    def load() -> tuple[WrkResult, float, Waits | None]:
        nginx0 = nginx.cpu_s()
        if run_queue:
            run_queue.reset()
        wrk = run_wrk(nginx.url(), args, args.duration)
        return wrk, nginx.cpu_s() - nginx0, run_queue.read() if run_queue else None

    options = {"pids": TRACED_PIDS[args.trace](nginx)} if args.trace != "all" else None
    (wrk, nginx_cpu, waits), fields = run_round(traced, load, options, args.nice, lambda c: count_rows(c, nginx),
                                                 args.catch_up)
    return Round(index=index, traced=traced, wrk=wrk, nginx_cpu_s=nginx_cpu, waits=waits, **fields)


def scalar(collector, sql: str) -> object:
    table = collector.query(sql)
    return table.column(0)[0].as_py() if table is not None and table.num_rows else None


def count_rows(collector, nginx: Nginx) -> dict:
    port, worker = nginx.port, nginx.worker_pid
    server = f"trace_role = 'server' and local_port = {port}"
    c = {
        "server_rows": scalar(collector, f"select count(*) from http_events where {server}"),
        "client_rows": scalar(collector, f"select count(*) from http_events "
                                         f"where trace_role = 'client' and remote_port = {port}"),
        "other_rows": scalar(collector, f"select count(*) from http_events "
                                        f"where trace_role not in ('server', 'client') "
                                        f"and (local_port = {port} or remote_port = {port})"),
        "server_conns": scalar(collector, f"select count(distinct conn_id) from http_events where {server}"),
        "statuses": collector.query(
            f"select trace_role, resp_status, count(*) as n from http_events "
            f"where local_port = {port} or remote_port = {port} group by all order by all").to_pylist(),
    }
    # conn_stats counters are cumulative per group: the latest (max) per group, summed per side.
    sides = collector.query(f"""
        select side, count(*) as groups, sum(conn_open) as conns, sum(sent) as sent, sum(recv) as recv from (
            select case when pid = {worker} then 'server' else 'client' end as side,
                   max(conn_open) as conn_open, max(bytes_sent) as sent, max(bytes_recv) as recv
            from conn_stats
            where (pid = {worker} and trace_role = 'server') or remote_port = {port}
            group by upid, remote_addr, remote_port, trace_role, side)
        group by side""").to_pylist()
    c["conn_stats"] = {row["side"]: row for row in sides}
    return c


# -- printing ------------------------------------------------------------------------


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.0f}"


def pct(x: float, digits: int = 1) -> str:
    return f"{x:.{digits}f}"


def print_rounds(rounds: list[Round]) -> None:
    print_table(
        ["round", "mode", "req/s", "requests", "p50 us", "p90 us", "p99 us", "nginx us/req", "wrk us/req",
         "CPUs busy", "tracer CPU %", "errors"],
        [[r.index, r.mode, f"{r.wrk.rps:,.0f}", f"{r.wrk.requests:,}", us(r.wrk.percentiles["50%"]),
          us(r.wrk.percentiles["90%"]), us(r.wrk.percentiles["99%"]),
          f"{r.nginx_cpu_s / r.wrk.requests * 1e6:.1f}", f"{r.wrk.cpu_s / r.wrk.requests * 1e6:.1f}",
          f"{r.machine_busy:.2f}", pct(r.tracer_pct) if r.traced else "-", r.wrk.errors or "-"]
         for r in rounds],
    )


def print_traced(rounds: list[Round], req_bytes: int, resp_bytes: int, connections: int) -> None:
    print(f"\nTraced rounds: rows of http_events for the nginx port vs wrk's completed requests "
          f"(wrk may leave up to {connections} requests in flight at its deadline)")
    rows = []
    for r in rounds:
        c = r.counts
        rows.append([r.index, f"{r.wrk.requests:,}", f"{c['server_rows']:,}", pct(r.found_pct, 3),
                     f"{c['server_rows'] - r.wrk.requests:+,}", f"{c['client_rows']:,}",
                     f"{c['client_rows'] - r.wrk.requests:+,}", c["other_rows"], c["server_conns"],
                     f"{c['events']:,}", f"{c['events_lost']:,}", c["decode_errors"], c["rows_dropped"]])
    print_table(["round", "wrk requests", "server rows", "found %", "server - wrk", "client rows", "client - wrk",
                 "unknown-role rows", "server conns", "events", "events lost", "decode errors", "rows dropped"], rows)

    print_losses(rounds)

    print(f"\nconn_stats (counted in the kernel at every syscall): bytes for the nginx port, and those bytes "
          f"divided by the exact request ({req_bytes} B) and response ({resp_bytes} B) sizes")
    rows = []
    for r in rounds:
        for side, s in sorted(r.counts["conn_stats"].items(), reverse=True):
            sent_size, recv_size = (resp_bytes, req_bytes) if side == "server" else (req_bytes, resp_bytes)
            rows.append([r.index, side, s["conns"], f"{s['sent']:,}", f"{s['recv']:,}",
                         f"{s['sent'] / sent_size:,.2f}", f"{s['recv'] / recv_size:,.2f}"])
    print_table(["round", "side", "conns opened", "bytes sent", "bytes recv", "sent / msg size", "recv / msg size"],
                rows)

    print("\nhttp_events by role and status (all traced rounds):")
    totals: dict[tuple, int] = {}
    for r in rounds:
        for s in r.counts["statuses"]:
            key = (s["trace_role"], s["resp_status"])
            totals[key] = totals.get(key, 0) + s["n"]
    print_table(["trace_role", "resp_status", "rows"], [[k[0], k[1], f"{n:,}"] for k, n in sorted(totals.items())])

    print("\nCollector (this process): start = compile + load + attach before wrk; catch-up = after wrk, until "
          "nothing waited to be decoded (--catch-up at most); stop = last flush + detach; its connector thread while wrk ran: on a CPU / runnable but waiting for one (schedstat); "
          "tracer CPU per event handled, and the cores that rate would need for every event (handled + lost)")
    print_table(["round", "start s", "start CPU s", "catch-up s", "stop s", "CPU during wrk %", "CPU wrk..stopped %",
                 "thread on CPU s", "thread waiting s", "us/event", "cores needed"],
                [[r.index, f"{r.start_s:.2f}", f"{r.start_cpu_s:.2f}", f"{r.catch_up_s:.1f}", f"{r.stop_s:.2f}",
                  pct(r.tracer_load_pct), pct(r.tracer_pct), f"{r.thread_run_s:.2f}",
                  f"{r.thread_wait_s:.2f}", f"{r.us_per_event:.1f}", f"{r.cores_needed:.2f}"] for r in rounds])


def print_waits(rounds: list[Round]) -> None:
    print("\nRun-queue latency of nginx and wrk (--runqueue): their threads' waits for a CPU once runnable")
    print_table(["round", "mode", "waits", "> 32 us %", "> 512 us %", "> 2 ms %", "longest < us"],
                [[r.index, r.mode, f"{r.waits.total:,}", pct(r.waits.share_over(32), 2),
                  pct(r.waits.share_over(512), 3), pct(r.waits.share_over(2048), 3), f"{r.waits.longest_us():,}"]
                 for r in rounds])


def print_summary(rounds: list[Round]) -> None:
    untraced = [r for r in rounds if not r.traced]
    traced = [r for r in rounds if r.traced]
    rps_u, rps_t = median([r.wrk.rps for r in untraced]), median([r.wrk.rps for r in traced])
    p99_u = median([r.wrk.percentiles["99%"] for r in untraced])
    p99_t = median([r.wrk.percentiles["99%"] for r in traced])
    found = 100 * sum(r.counts["server_rows"] for r in traced) / sum(r.wrk.requests for r in traced)
    found_min = min(r.found_pct for r in traced)
    client = 100 * sum(r.counts["client_rows"] for r in traced) / sum(r.wrk.requests for r in traced)
    ng_u = median([r.nginx_cpu_s / r.wrk.requests for r in untraced])
    ng_t = median([r.nginx_cpu_s / r.wrk.requests for r in traced])
    wrk_u = median([r.wrk.cpu_s / r.wrk.requests for r in untraced])
    wrk_t = median([r.wrk.cpu_s / r.wrk.requests for r in traced])

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    print("\nSummary (medians over rounds; ratios traced / untraced)")
    print_table(
        ["figure", "untraced", "traced", "ratio / value", "target"],
        [
            ["throughput (req/s)", f"{rps_u:,.0f}", f"{rps_t:,.0f}", f"{rps_t / rps_u:.3f}",
             f">= {TARGETS['throughput']}: {verdict(rps_t / rps_u >= TARGETS['throughput'])}"],
            ["p99 latency (us)", us(p99_u), us(p99_t), f"{p99_t / p99_u:.3f}",
             f"<= {TARGETS['p99']}: {verdict(p99_t / p99_u <= TARGETS['p99'])}"],
            ["wrk requests in http_events, server side (%)", "-", "-", f"{found:.3f} (worst round {found_min:.3f})",
             f">= {TARGETS['found']}: {verdict(found_min >= TARGETS['found'])}"],
            ["wrk requests in http_events, client side (%)", "-", "-", f"{client:.3f}", "-"],
            ["tracer CPU, wrk start..collector stopped (% of one core)", "-",
             pct(median([r.tracer_pct for r in traced])), "-", "-"],
            ["tracer CPU, while wrk ran only (% of one core)", "-",
             pct(median([r.tracer_load_pct for r in traced])), "-", "-"],
            ["tracer CPU per event handled (us)", "-", f"{median([r.us_per_event for r in traced]):.1f}", "-", "-"],
            ["cores the tracer would need for every event", "-", f"{median([r.cores_needed for r in traced]):.2f}",
             "-", "-"],
            ["nginx worker CPU per request (us)", f"{ng_u * 1e6:.1f}", f"{ng_t * 1e6:.1f}", f"{ng_t / ng_u:.3f}", "-"],
            ["wrk CPU per request (us)", f"{wrk_u * 1e6:.1f}", f"{wrk_t * 1e6:.1f}", f"{wrk_t / wrk_u:.3f}", "-"],
            ["events lost (sum)", "-", f"{sum(r.counts['events_lost'] for r in traced):,}", "-", "0"],
            ["decode errors (sum)", "-", f"{sum(r.counts['decode_errors'] for r in traced):,}", "-", "0"],
        ],
    )


# -- main ----------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each mode (default 3)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run (default 10)")
    parser.add_argument("--connections", type=int, default=16, help="wrk -c (default 16)")
    parser.add_argument("--threads", type=int, default=1, help="wrk -t (default 1)")
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="untraced wrk seconds before the rounds (default 2; 0: none)")
    parser.add_argument("--no-sendfile", action="store_true",
                        help="nginx with `sendfile off` (body written from user memory)")
    parser.add_argument("--trace", choices=("all", "nginx", "nothing"), default="all",
                        help="what traced rounds trace: every process (default); nginx's worker only "
                             "(SocketTracerOptions.pids); nothing, every probe attached but each event filtered "
                             "out in the kernel at its first check: the floor of the design's cost")
    parser.add_argument("--nice", type=parse_nice, default=DEFAULT_NICE, metavar="N|idle",
                        help=f"the collector's nice (its connector threads' niceness above this process's, or idle; "
                             f"default {DEFAULT_NICE}, the collector's own default)")
    parser.add_argument("--runqueue", action="store_true",
                        help="also measure how long nginx's and wrk's threads waited for a CPU (bench/runqueue.py)")
    parser.add_argument("--no-decode", action="store_true",
                        help="drain data events and drop them undecoded: the capture's cost without decoding")
    add_catch_up_option(parser)
    parser.add_argument("--delay-ms", type=int, default=None,
                        help="pace wrk: each connection waits this long before each request (default: no wait)")
    args = parser.parse_args()
    if args.rounds < 1 or args.duration <= 0:
        parser.error("--rounds and --duration must be positive")
    if args.delay_ms is not None and args.delay_ms < 0:
        parser.error("--delay-ms must be >= 0")
    if requirements_missing("http_overhead", ["nginx", "wrk"]):
        return 2

    if args.no_decode:
        SocketTracer._decode_data = count_undecoded
    version = tracedb_version()
    nginx = Nginx(sendfile=not args.no_sendfile)
    rounds: list[Round] = []
    run_queue = RunQueueLatency(["nginx", "wrk"]) if args.runqueue else None
    try:
        nginx.start()
        args.pace_script = pace_script(nginx.tmp, args.delay_ms)
        req_bytes, resp_bytes = len(nginx.wrk_request()), nginx.response_size()
        print(f"tracedb {version}; nginx {HOST}:{nginx.port} (worker pid {nginx.worker_pid}), "
              f"sendfile {'on' if nginx.sendfile else 'off'}, "
              f"{FILE_SIZE} B file; request {req_bytes} B, response {resp_bytes} B; "
              f"wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s"
              f"{'' if args.delay_ms is None else f', {args.delay_ms} ms before each request'}; "
              f"{args.rounds} x (untraced, traced{'' if args.trace == 'all' else f', tracing {args.trace}'}); "
              f"collector nice {args.nice}{'; data events dropped undecoded' if args.no_decode else ''}; "
              f"{os.cpu_count()} CPUs")
        if args.warmup > 0:
            run_wrk(nginx.url(), args, args.warmup)
        for i in range(args.rounds):
            for traced in (False, True):
                r = play_round(len(rounds) + 1, traced, nginx, args, run_queue)
                rounds.append(r)
                extra = f", tracer CPU {r.tracer_pct:.1f} %, found {r.found_pct:.3f} %" if traced else ""
                print(f"  round {r.index} {r.mode}: {r.wrk.rps:,.0f} req/s, "
                      f"p99 {us(r.wrk.percentiles['99%'])} us{extra}",
                      file=sys.stderr)
    finally:
        nginx.stop()
        if run_queue:
            run_queue.close()

    print()
    print_rounds(rounds)
    if args.runqueue:
        print_waits(rounds)
    print_traced([r for r in rounds if r.traced], req_bytes, resp_bytes, args.connections)
    print_summary(rounds)
    if tracedb_version() != version:
        print(f"\nwarning: tracedb's code changed during the run ({version} -> {tracedb_version()}): "
              "each traced round compiled the C as it was then")
    return 0


if __name__ == "__main__":
    sys.exit(main())
