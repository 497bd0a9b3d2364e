"""The table store: every published table, behind one lock.

Connectors call `append` from their own threads; the SQL layer calls `snapshot`
at the start of each query and gets, for every table, the partitions held at
that instant. Appends and retention after that do not change the snapshot
(partitions are immutable and the snapshot holds references to them).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

import pyarrow as pa

from tracedb.schema import TableSchema, get_schema
from tracedb.storage.table import PartitionedTable, Retention, TableSnapshot

STATS_TABLE = "tracedb_tables"


def _now_us() -> int:
    return time.time_ns() // 1000


class TableStore:
    def __init__(
        self,
        schemas: Iterable[TableSchema],
        retention: Retention | None = None,
        per_table: dict[str, Retention] | None = None,
        clock_us: Callable[[], int] = _now_us,
    ):
        per_table = per_table or {}
        default = retention or Retention()
        self._tables = {s.name: PartitionedTable(s, per_table.get(s.name, default)) for s in schemas}
        unknown = set(per_table) - set(self._tables)
        if unknown:
            raise KeyError(f"retention set for unknown tables: {', '.join(sorted(unknown))}")
        self._lock = threading.Lock()
        self._clock_us = clock_us

    @property
    def table_names(self) -> list[str]:
        return list(self._tables)

    def schema(self, table: str) -> TableSchema:
        return self._table(table).schema

    def _table(self, name: str) -> PartitionedTable:
        try:
            return self._tables[name]
        except KeyError:
            raise KeyError(f"the store holds no table {name!r}") from None

    def append(self, table: str, batch: pa.RecordBatch | pa.Table) -> None:
        batches = batch.to_batches() if isinstance(batch, pa.Table) else [batch]
        target = self._table(table)
        with self._lock:
            for b in batches:
                target.append(b, self._clock_us())

    def enforce_retention(self) -> None:
        """Apply the age limit to tables that receive no appends."""
        with self._lock:
            now_us = self._clock_us()
            for t in self._tables.values():
                t.enforce_retention(now_us)

    def snapshot(self) -> dict[str, TableSnapshot]:
        with self._lock:
            return {name: t.snapshot() for name, t in self._tables.items()}

    def read(self, table: str) -> pa.Table:
        """All rows of one table held now, as one Arrow table (no SQL)."""
        target = self._table(table)
        with self._lock:
            snap = target.snapshot()
        return snap.to_arrow()

    def stats(self) -> pa.Table:
        """One row per table: what it holds and what retention dropped."""
        schema = get_schema(STATS_TABLE).arrow_schema
        with self._lock:
            now_us = self._clock_us()
            rows = [self._stats_row(t, now_us) for t in self._tables.values()]
        return pa.Table.from_pylist(rows, schema=schema)

    @staticmethod
    def _stats_row(t: PartitionedTable, now_us: int) -> dict:
        snap = t.snapshot()
        parts = snap.partitions
        return {
            "time_": now_us,
            "table_name": t.schema.name,
            "rows": t.num_rows,
            "bytes": t.nbytes,
            "partitions": len(parts),
            "oldest": min((p.min_time_us for p in parts), default=None),
            "newest": max((p.max_time_us for p in parts), default=None),
            "rows_appended": t.counters.rows_appended,
            "rows_dropped": t.counters.rows_dropped,
            "batches_rejected": t.counters.batches_rejected,
            "max_bytes": t.retention.max_bytes,
            "max_age_s": t.retention.max_age_s,
        }
