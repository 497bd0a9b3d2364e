"""Small builders shared by the unit tests, and the random sessions that test
a protocol decoder's fast path against its general path."""

import random

import pyarrow as pa

from tracedb.schema import parse_schema

EVENTS = parse_schema(
    """
name = "events"
description = "test events"
[[columns]]
name = "time_"
type = "time"
description = "when"
[[columns]]
name = "seq"
type = "int64"
semantic = "id"
description = "sequence number"
[[columns]]
name = "path"
type = "string"
semantic = "path"
description = "a path"
"""
)


def events_batch(start_seq: int, count: int, time_us: int, step_us: int = 1) -> pa.RecordBatch:
    seqs = list(range(start_seq, start_seq + count))
    return pa.RecordBatch.from_pydict(
        {
            "time_": [time_us + i * step_us for i in range(count)],
            "seq": seqs,
            "path": [f"/p{s % 7}" for s in seqs],
        },
        schema=EVENTS.arrow_schema,
    )


class FakeClock:
    """A settable microsecond clock for the store."""

    def __init__(self, now_us: int = 1_700_000_000_000_000):
        self.now_us = now_us

    def __call__(self) -> int:
        return self.now_us


# Random sessions. A session is a list of calls, each (request side, "bytes"
# or "gap", data or lost bytes, time), as the socket tracer makes them.

Call = tuple[bool, str, bytes | int, int]


def random_calls(rng: random.Random, exchanges: list[tuple[bytes, bytes]]) -> list[Call]:
    """The calls of a session of exchanges, each (request bytes, response
    bytes): mostly one exchange's side per call, as syscalls carry them,
    else random pieces; now and then garbage or a gap, or the start missed."""
    calls, t = [], 100
    for request, response in exchanges:
        for side, data in ((True, request), (False, response)):
            at = rng.randrange(len(data) + 1) if rng.random() < 0.05 else 0
            while at < len(data):
                piece = data[at : at + rng.choice([len(data), len(data), 1, 2, 5, 50, 1000])]
                at += len(piece)
                t += rng.choice([0, 1])
                if rng.random() < 0.03:
                    calls.append((side, "gap", len(piece), t))
                    continue
                if rng.random() < 0.02:
                    calls.append((side, "bytes", rng.randbytes(rng.randrange(1, 8)), t))
                calls.append((side, "bytes", piece, t))
    return calls


def trace_rows(trace, calls: list[Call]) -> list[list]:
    """The rows a trace gives after each call, and after the close."""
    rows = []
    for request_side, kind, data, time_ns in calls:
        if kind == "gap":
            trace.on_gap(request_side, data, time_ns)
        else:
            trace.on_bytes(request_side, data, time_ns)
        rows.append(trace.take_rows())
    trace.on_close(10**9)
    rows.append(trace.take_rows())
    return rows


def parser_messages(parser, calls: list[Call], is_request: bool) -> list[list]:
    """The messages a parser returns for each call of its side."""
    return [
        parser.gap(data, time_ns) if kind == "gap" else parser.feed(data, time_ns)
        for request_side, kind, data, time_ns in calls
        if request_side == is_request
    ]
