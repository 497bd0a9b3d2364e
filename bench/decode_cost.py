"""Decoding cost of the socket tracer per protocol, without a kernel.

The live benchmarks (http_overhead.py, db_overhead.py) give the tracer's CPU
per event on a shared, noisy VM, mixed with the load's own needs. This one
replays sessions built in memory through the connector's whole user side
(the raw events as the BPF program submits them, the rings' hold, routing,
stream buffers, protocol traces, rows to Arrow) and times only that:

  * http: nginx serving a 612-byte file with sendfile to 16 keep-alive
    clients (wrk's request, nginx's 238-byte head, the body as an uncaptured
    sendfile), both ends traced: 5 events per request;
  * pgsql: pgbench -S on 8 connections (a simple Query, its RowDescription,
    DataRow, CommandComplete and ReadyForQuery in one read), both ends: 4
    events per transaction;
  * redis: redis-benchmark GET/SET on 16 connections, both ends: 4 events
    per request.

Per protocol, `--runs` times: a new connector (tests/unit/raw_events.py's
stand-in for the BPF program), every event submitted (not timed), then
sampling ticks until every event is decoded and a push (timed, process CPU
time). Printed: events, rows against the requests sent (every one must be
found), and CPU per event, best and median. No root, no network.

    .venv/bin/python bench/decode_cost.py [--requests 20000] [--runs 5] [--only http,pgsql,redis]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from common import median, print_table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' builders
from tests.unit import test_pgsql as pg  # noqa: E402
from tests.unit import test_redis as resp  # noqa: E402
from tests.unit.raw_events import FakeProgram, conn_event, data_event, tracer_with  # noqa: E402

from tracedb.connectors.socket_tracer.events import ConnEventKind, Direction, Protocol, Role  # noqa: E402

STEP_NS = 20_000  # between two requests of one connection
FILE_SIZE = 612


@dataclass
class Exchange:
    """What one request moves: the request, the answer's captured parts, and bytes moved uncaptured after them."""

    request: bytes
    answer: list[bytes]
    uncaptured: int = 0


def http_exchange(i: int) -> Exchange:
    request = b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
    head = (b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sun, 22 Nov 2026 07:21:23 GMT\r\n"
            b"Content-Type: text/html\r\nContent-Length: 612\r\nLast-Modified: Sun, 22 Nov 2026 07:00:00 GMT\r\n"
            b"Connection: keep-alive\r\nETag: \"6a3b1c2d-264\"\r\nAccept-Ranges: bytes\r\n\r\n")
    return Exchange(request, [head], FILE_SIZE)


def pgsql_exchange(i: int) -> Exchange:
    request = pg.query(f"SELECT abalance FROM pgbench_accounts WHERE aid = {i * 7919 % 100000 + 1};")
    answer = pg.row_description(("abalance", 23)) + pg.data_row(b"0") + pg.complete("SELECT 1") + pg.ready()
    return Exchange(request, [answer])


def redis_exchange(i: int) -> Exchange:
    if i % 2:
        return Exchange(resp.command("GET", "key:__rand_int__"), [resp.bulk(b"xxx")])
    return Exchange(resp.command("SET", "key:__rand_int__", "xxx"), [resp.OK])


@dataclass
class Traffic:
    """A protocol's benchmark session: its table, its connections, its request n's exchange."""

    protocol: Protocol
    table: str
    connections: int
    exchange: Callable[[int], Exchange]


PROTOCOLS = {
    "http": Traffic(Protocol.HTTP, "http_events", 16, http_exchange),
    "pgsql": Traffic(Protocol.PGSQL, "pgsql_events", 8, pgsql_exchange),
    "redis": Traffic(Protocol.REDIS, "redis_events", 16, redis_exchange),
}


def side_events(p: Traffic, requests: int, role: Role, first_conn_id: int) -> Iterator[tuple[int, str, bytes]]:
    """(time, ring, raw event) of one side (server or client) of every connection."""
    sends_request = Direction.SEND if role == Role.CLIENT else Direction.RECV
    answers = Direction.RECV if role == Role.CLIENT else Direction.SEND
    for c in range(p.connections):
        conn_id = first_conn_id + c
        for kind, t in ((ConnEventKind.OPEN, 0), (ConnEventKind.PROTOCOL, 1)):
            yield t, "conn_ring", conn_event(kind, t, conn_id, p.protocol, role, rport=40000 + c)
        pos = {Direction.SEND: 0, Direction.RECV: 0}
        for n in range(c, requests, p.connections):
            x = p.exchange(n)
            t = 10 + n * STEP_NS // p.connections
            parts = [(sends_request, x.request, len(x.request))]
            if role == Role.CLIENT:  # the client reads the whole answer at once
                answer = b"".join(x.answer)
                parts.append((answers, answer, len(answer) + x.uncaptured))
            else:
                parts += [(answers, part, len(part)) for part in x.answer]
                if x.uncaptured:
                    parts.append((answers, b"", x.uncaptured))
            for k, (direction, payload, size) in enumerate(parts):
                yield t + k, "data_ring", data_event(direction, pos[direction], payload, t + k, size, conn_id,
                                                     p.protocol, role)
                pos[direction] += size


def session(p: Traffic, requests: int) -> list[tuple[str, bytes]]:
    """Both ends of every connection, in time order as the rings would hold them."""
    events = [*side_events(p, requests, Role.SERVER, 1), *side_events(p, requests, Role.CLIENT, 1001)]
    events.sort(key=lambda e: e[0])
    return [(ring, raw) for _, ring, raw in events]


def decode_once(events: list[tuple[str, bytes]], table: str) -> tuple[float, int]:
    """(process CPU seconds, rows of `table`) of decoding `events` through a new connector."""
    program = FakeProgram()
    tracer = tracer_with(program)
    program.submit(events)
    t0 = time.process_time()
    while program.submitted or len(tracer.data_ring) or len(tracer.conn_ring):
        tracer.sample()
    rows = tracer.flush()[table].num_rows
    return time.process_time() - t0, rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000, help="requests per protocol (default 20000)")
    parser.add_argument("--runs", type=int, default=5, help="decodes of each session (default 5)")
    parser.add_argument("--only", default=",".join(PROTOCOLS), help="protocols, comma-separated (default all)")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n]
    unknown = set(names) - set(PROTOCOLS)
    if unknown or args.requests < 1 or args.runs < 1:
        parser.error(f"unknown protocols {sorted(unknown)}" if unknown else "--requests and --runs must be positive")
    print(f"{args.requests:,} requests per protocol, both ends traced; {args.runs} runs; process CPU time\n")
    rows = []
    for name in names:
        p = PROTOCOLS[name]
        events = session(p, args.requests)
        data_events = sum(ring == "data_ring" for ring, _ in events)
        runs = [decode_once(events, p.table) for _ in range(args.runs)]
        per_event = [seconds / data_events * 1e6 for seconds, _ in runs]
        found = {count for _, count in runs}
        rows.append([name, f"{data_events:,}", f"{2 * args.requests:,}", ", ".join(f"{n:,}" for n in sorted(found)),
                     f"{min(per_event):.2f}", f"{median(per_event):.2f}"])
    print_table(["protocol", "data events", "rows expected (both ends)", "rows", "us/event best", "us/event median"],
                rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
