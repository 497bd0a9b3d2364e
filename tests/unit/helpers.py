"""Small builders shared by the unit tests."""

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
