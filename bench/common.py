"""Shared pieces of the benchmarks: an http_events-like table, record batches of
synthetic requests in time order, a clock that follows event time, and timing
and printing helpers. Nothing here is timed by itself."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from tracedb.schema import parse_schema

TABLE = "http_events"
BATCH_ROWS = 65_536
DEFAULT_ROWS = 10_000_000
SECOND_US = 1_000_000
MIB = 1024 * 1024

HTTP_EVENTS = parse_schema(
    """
name = "http_events"
description = "HTTP requests and their responses (benchmark copy)."
[[columns]]
name = "time_"
type = "time"
description = "When the request was seen."
[[columns]]
name = "upid"
type = "string"
semantic = "upid"
description = "Unique process id of the server."
[[columns]]
name = "pid"
type = "int32"
semantic = "pid"
description = "Process id of the server."
[[columns]]
name = "req_method"
type = "string"
semantic = "name"
description = "HTTP method."
[[columns]]
name = "req_path"
type = "string"
semantic = "path"
description = "Request path."
[[columns]]
name = "resp_status"
type = "int32"
semantic = "code"
description = "HTTP status code."
[[columns]]
name = "latency"
type = "int64"
unit = "ns"
description = "Time from request to response."
[[columns]]
name = "req_body_size"
type = "int64"
unit = "bytes"
description = "Request body size."
[[columns]]
name = "resp_body_size"
type = "int64"
unit = "bytes"
description = "Response body size."
"""
)

_RESOURCES = ["users", "orders", "items", "carts", "sessions", "payments", "search", "reviews", "stock", "auth"]
PATHS = pa.array([f"/api/v{1 + i % 2}/{_RESOURCES[i % 10]}/{i}" + ("/details" * (i % 3)) for i in range(200)])
_PIDS = np.arange(1000, 1064, dtype=np.int32)
UPIDS = pa.array([f"{pid}:{8_123_456 + 977 * pid}" for pid in _PIDS])
METHODS = pa.array(["GET", "POST", "PUT", "DELETE", "PATCH"])
_METHOD_P = [0.70, 0.18, 0.06, 0.03, 0.03]
_PATH_P = 1.0 / np.arange(1, len(PATHS) + 1)  # a few hot paths, a long tail
_PATH_P /= _PATH_P.sum()
_STATUSES = np.array([200, 201, 204, 301, 400, 404, 500], dtype=np.int32)
_STATUS_P = [0.80, 0.05, 0.03, 0.02, 0.03, 0.05, 0.02]


def make_batch(rng: np.random.Generator, start_us: int, end_us: int, rows: int) -> pa.RecordBatch:
    """`rows` requests with times spread evenly over [start_us, end_us)."""
    times = start_us + (np.arange(rows, dtype=np.int64) * (end_us - start_us)) // rows
    proc = rng.integers(0, len(_PIDS), rows)
    columns = [
        pa.array(times, type=HTTP_EVENTS.arrow_schema.field("time_").type),
        UPIDS.take(proc),
        pa.array(_PIDS[proc]),
        METHODS.take(rng.choice(len(METHODS), rows, p=_METHOD_P)),
        PATHS.take(rng.choice(len(PATHS), rows, p=_PATH_P)),
        pa.array(rng.choice(_STATUSES, rows, p=_STATUS_P)),
        pa.array(rng.lognormal(14.0, 1.0, rows).astype(np.int64)),  # ~1.2 ms median
        pa.array(rng.lognormal(5.0, 2.0, rows).astype(np.int64)),
        pa.array(rng.lognormal(8.0, 1.5, rows).astype(np.int64)),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=HTTP_EVENTS.arrow_schema)


def make_batches(rows: int, start_us: int, span_us: int, seed: int = 0) -> list[pa.RecordBatch]:
    """`rows` requests in time order over [start_us, start_us + span_us), BATCH_ROWS per batch."""
    rng = np.random.default_rng(seed)
    batches, done = [], 0
    while done < rows:
        n = min(BATCH_ROWS, rows - done)
        lo = start_us + span_us * done // rows
        hi = start_us + span_us * (done + n) // rows
        batches.append(make_batch(rng, lo, hi, n))
        done += n
    return batches


def end_us(batch: pa.RecordBatch) -> int:
    return batch.column(0)[-1].value


class EventClock:
    """The store's clock, set by the benchmark to the event time being appended."""

    def __init__(self, now_us: int = 0):
        self.now_us = now_us

    def __call__(self) -> int:
        return self.now_us


def append_all(store, batches: list[pa.RecordBatch], clock: EventClock, ends: list[int]) -> None:
    """Append in order; the clock reads each batch's last event time while it is appended."""
    for batch, end in zip(batches, ends):
        clock.now_us = end
        store.append(TABLE, batch)


def time_runs(fn: Callable[[], object], runs: int) -> list[float]:
    """Seconds taken by each of `runs` calls of `fn`."""
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def p99(xs: list[float]) -> float:
    return float(np.percentile(xs, 99))


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"


def print_table(headers: list[str], rows: list[list[object]]) -> None:
    """Left-align the first column, right-align the others."""
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(line(row))
