"""One table of the store: sealed time partitions plus one open partition.

Connectors append Arrow record batches; they collect in the open partition until
it is big or old enough to seal. A sealed `Partition` is immutable and knows the
time range it covers, which lets the SQL layer skip partitions that a
time-bounded query cannot touch. Retention drops whole oldest partitions when
the table holds more bytes than its budget or data older than its age limit,
and counts the rows it dropped.

Not thread-safe by itself: `TableStore` serialises access with one lock.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from tracedb.schema import TableSchema

# A table is cut into about this many partitions over its retention window, so
# retention frees memory in small steps and a time-bounded query can skip most
# of the table, while a query over everything plans few enough scans.
PARTITIONS_PER_WINDOW = 16

_partition_ids = itertools.count(1)


@dataclass(frozen=True)
class Retention:
    """How much of a table to keep: whichever limit is reached first."""

    max_bytes: int = 128 * 1024 * 1024
    max_age_s: float = 3600.0

    def __post_init__(self):
        if self.max_bytes <= 0 or self.max_age_s <= 0:
            raise ValueError(f"retention limits must be positive, got {self}")


@dataclass(frozen=True)
class Partition:
    """Immutable rows of one table covering [min_time_us, max_time_us]."""

    id: int
    data: pa.Table
    min_time_us: int
    max_time_us: int
    nbytes: int  # kept: Arrow walks every buffer to compute it

    @property
    def num_rows(self) -> int:
        return self.data.num_rows

    @classmethod
    def of(cls, data: pa.Table) -> Partition:
        lo, hi = pc.min_max(data.column("time_")).values()
        return cls(next(_partition_ids), data, _as_us(lo), _as_us(hi), data.nbytes)


def _as_us(scalar: pa.Scalar) -> int:
    return scalar.cast(pa.int64()).as_py()


@dataclass
class TableCounters:
    rows_appended: int = 0
    rows_dropped: int = 0
    batches_rejected: int = 0


@dataclass
class PartitionedTable:
    schema: TableSchema
    retention: Retention = field(default_factory=Retention)
    sealed: list[Partition] = field(default_factory=list)
    open_batches: list[pa.RecordBatch] = field(default_factory=list)
    open_bytes: int = 0
    open_since_us: int | None = None
    counters: TableCounters = field(default_factory=TableCounters)
    _open_snapshot: Partition | None = None  # cached until the open rows change

    @property
    def seal_bytes(self) -> int:
        return max(1, self.retention.max_bytes // PARTITIONS_PER_WINDOW)

    @property
    def seal_age_us(self) -> int:
        return int(self.retention.max_age_s * 1e6 / PARTITIONS_PER_WINDOW)

    def append(self, batch: pa.RecordBatch, now_us: int) -> None:
        """Add rows; `batch` must carry exactly the table's Arrow schema."""
        if batch.num_rows == 0:
            return
        if not batch.schema.equals(self.schema.arrow_schema, check_metadata=False):
            self.counters.batches_rejected += 1
            raise ValueError(
                f"batch for {self.schema.name} does not match its schema:\n"
                f"got {batch.schema}\nwant {self.schema.arrow_schema}"
            )
        self._seal_if_old(now_us)  # the new rows then start the next time partition
        if self.open_since_us is None:
            self.open_since_us = now_us
        self.open_batches.append(batch)
        self.open_bytes += batch.nbytes
        self._open_snapshot = None
        self.counters.rows_appended += batch.num_rows
        if self.open_bytes >= self.seal_bytes:
            self.seal()
        self.enforce_retention(now_us)

    def seal(self) -> None:
        if not self.open_batches:
            return
        data = pa.Table.from_batches(self.open_batches, self.schema.arrow_schema).combine_chunks()
        self.sealed.append(Partition.of(data))
        self.open_batches, self.open_bytes, self.open_since_us = [], 0, None
        self._open_snapshot = None

    def _seal_if_old(self, now_us: int) -> None:
        if self.open_since_us is not None and now_us - self.open_since_us >= self.seal_age_us:
            self.seal()

    def enforce_retention(self, now_us: int) -> None:
        """Drop whole oldest sealed partitions past the byte budget or the age limit."""
        self._seal_if_old(now_us)  # so that a table no longer appended to still ages out
        oldest_allowed_us = now_us - int(self.retention.max_age_s * 1e6)
        while self.sealed and (
            self.nbytes > self.retention.max_bytes or self.sealed[0].max_time_us < oldest_allowed_us
        ):
            dropped = self.sealed.pop(0)
            self.counters.rows_dropped += dropped.num_rows

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.sealed) + self.open_bytes

    @property
    def num_rows(self) -> int:
        return sum(p.num_rows for p in self.sealed) + sum(b.num_rows for b in self.open_batches)

    def snapshot(self) -> TableSnapshot:
        """The rows held now; later appends and drops do not change it."""
        if self.open_batches and self._open_snapshot is None:
            self._open_snapshot = Partition.of(pa.Table.from_batches(self.open_batches, self.schema.arrow_schema))
        return TableSnapshot(self.schema, tuple(self.sealed), self._open_snapshot)


@dataclass(frozen=True)
class TableSnapshot:
    schema: TableSchema
    sealed: tuple[Partition, ...]
    open: Partition | None

    @property
    def partitions(self) -> tuple[Partition, ...]:
        return self.sealed + ((self.open,) if self.open else ())

    def to_arrow(self) -> pa.Table:
        tables = [p.data for p in self.partitions] or [self.schema.empty_table()]
        return pa.concat_tables(tables)
