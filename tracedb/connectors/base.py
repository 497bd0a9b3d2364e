"""The connector interface: what every data source implements.

A connector owns its kernel side (BPF program, /proc reads), publishes one or
more tables, and is driven by the collector on two clocks, as in Stirling:

- `sample()` every `sampling_period_s`: read the kernel or /proc and keep the
  raw data (cheap: copies, no decoding);
- `flush()` every `push_period_s`: decode what was kept into Arrow record
  batches, returned per table, which the collector appends to the store.

Lifecycle: `start()` (may raise `Unavailable` when this node cannot run it:
the collector reports it and runs the others), then sample/flush from one
thread, then `stop()`, always called, which must release every kernel object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pyarrow as pa


class Unavailable(Exception):
    """This connector cannot run on this node; the message says why."""


@dataclass
class ConnectorStats:
    events: int = 0
    events_waiting: int = 0  # received, not yet decoded: a decoder behind its load
    oldest_waiting_us: int | None = None  # wall-clock capture time of the oldest of them
    events_lost: int = 0
    decode_errors: int = 0


class Connector:
    name: ClassVar[str]
    tables: ClassVar[tuple[str, ...]]
    description: ClassVar[str]
    sampling_period_s: ClassVar[float] = 1.0
    push_period_s: ClassVar[float] = 1.0
    needs_bpf: ClassVar[bool] = False  # the collector checks the kernel set-up first

    def __init__(self) -> None:
        self.stats = ConnectorStats()

    def start(self) -> None:
        """Acquire kernel resources; raise Unavailable if this node cannot run it."""

    def sample(self) -> None:
        raise NotImplementedError

    def flush(self) -> dict[str, pa.RecordBatch]:
        raise NotImplementedError

    def stop(self) -> None:
        """Release every kernel resource; safe to call more than once."""
