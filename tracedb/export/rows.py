"""Which of the store's rows an export takes, and which it can no longer take.

The rows ever appended to a store table form one sequence: retention drops its
oldest rows, the table holds the rest (sealed partitions in order, then the
open one), appends extend it. `held_rows` places what a table holds in that
sequence: its first row is number `rows_dropped`. An exporter that remembers
how far along the sequence it has written knows exactly which rows are new and
how many retention took before it could write them.

The store gives snapshots and counters under separate acquisitions of its
lock. Counters move whenever rows are appended or dropped (sealing only
regroups rows), so a snapshot taken between two equal readings of a table's
counters is the one they describe; connectors push about once a second, so a
reading rarely has to be repeated.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa

from tracedb.storage import TableStore

ATTEMPTS = 100


@dataclass(frozen=True)
class HeldRows:
    rows: pa.Table
    first: int  # number of rows[0] in the sequence of rows ever appended: the rows dropped before it

    @property
    def end(self) -> int:
        return self.first + self.rows.num_rows

    def from_number(self, number: int) -> pa.Table:
        """The held rows numbered `number` and later."""
        return self.rows.slice(max(0, number - self.first))


def held_rows(store: TableStore, tables: Iterable[str]) -> dict[str, HeldRows]:
    pending = set(tables)
    held: dict[str, HeldRows] = {}
    for attempt in range(ATTEMPTS):
        before = counters(store)
        snapshot = store.snapshot()
        after = counters(store)
        for table in [t for t in pending if before[t] == after[t]]:
            _, dropped = after[table]
            held[table] = HeldRows(snapshot[table].to_arrow(), dropped)
            pending.discard(table)
        if not pending:
            return held
        time.sleep(0.001 * attempt)  # step out of the way of a burst of appends
    raise RuntimeError(f"the store kept changing while reading {', '.join(sorted(pending))}; try again")


def counters(store: TableStore) -> dict[str, tuple[int, int]]:
    """Per table: (rows appended, rows dropped by retention) so far."""
    stats = store.stats().select(["table_name", "rows_appended", "rows_dropped"])
    return {row["table_name"]: (row["rows_appended"], row["rows_dropped"]) for row in stats.to_pylist()}
