"""SQL over the store: one in-process DuckDB database, tables shown as views.

Every thread that queries gets its own DuckDB cursor (a connection to the same
database) in which each store table is a temporary view of the same name:

    SELECT * FROM __tdb_<table>_<id> WHERE time_ BETWEEN <min> AND <max>   -- one per sealed partition
    UNION ALL ...
    UNION ALL SELECT * FROM __tdb_<table>_open                            -- rows not sealed yet

The partitions are Arrow tables registered without copying. The constant time
guard on each branch is what makes time partitions pay off: DuckDB's optimizer
combines it with the query's own bound on `time_` (also `now() - interval ...`)
and removes branches that cannot match, so a query over the last minute scans
only the partitions that overlap it.

At the start of each query the cursor is brought up to date with a store
snapshot: new partitions registered, dropped ones unregistered, the open
partition re-registered. All tables come from the same snapshot, so one query
sees one consistent instant while connectors keep appending.

Tables users create (CREATE TABLE/VIEW ...) live in the shared database and are
visible to every cursor; they can join the store's views like any table.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from tracedb.storage.store import STATS_TABLE, TableStore
from tracedb.storage.table import Partition, TableSnapshot

VirtualTables = dict[str, Callable[[], pa.Table]]


class QueryError(Exception):
    """A statement DuckDB refused or failed to run; the message is DuckDB's."""


@dataclass
class _RegisteredTable:
    partition_ids: tuple[int, ...]
    open_id: int | None


@dataclass
class _Session:
    """One thread's cursor and what is registered in it."""

    cursor: duckdb.DuckDBPyConnection
    tables: dict[str, _RegisteredTable] = field(default_factory=dict)


class QueryEngine:
    def __init__(self, store: TableStore, virtual_tables: VirtualTables | None = None):
        self.store = store
        self.database = duckdb.connect(":memory:")
        self._virtual: VirtualTables = {STATS_TABLE: store.stats, **(virtual_tables or {})}
        self._local = threading.local()
        self._sessions_lock = threading.Lock()
        self._sessions: list[_Session] = []

    def add_virtual_table(self, name: str, produce: Callable[[], pa.Table]) -> None:
        """A table computed at each query (status tables): `produce` returns its rows."""
        self._virtual[name] = produce

    def query(self, sql: str) -> pa.Table | None:
        """Run one or more statements; the last one's rows, or None if it returns none."""
        session = self._session()
        self._sync(session)
        try:
            relation = session.cursor.sql(sql)
            return None if relation is None else relation.to_arrow_table()
        except duckdb.Error as e:
            raise QueryError(str(e)) from None

    def interrupt(self) -> None:
        """Cancel the statements running in every cursor (Ctrl-C in the prompt)."""
        with self._sessions_lock:
            for s in self._sessions:
                s.cursor.interrupt()

    def close(self) -> None:
        with self._sessions_lock:
            for s in self._sessions:
                s.cursor.close()
            self._sessions.clear()
        self.database.close()

    def _session(self) -> _Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = _Session(self.database.cursor())
            self._local.session = session
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    def _sync(self, session: _Session) -> None:
        for name, snap in self.store.snapshot().items():
            self._sync_table(session, name, snap)
        for name, produce in self._virtual.items():
            session.cursor.register(name, produce())

    def _sync_table(self, session: _Session, name: str, snap: TableSnapshot) -> None:
        cursor = session.cursor
        known = session.tables.get(name)
        ids = tuple(p.id for p in snap.sealed)
        open_id = snap.open.id if snap.open else None
        registered_ids = known.partition_ids if known else ()
        for old in set(registered_ids) - set(ids):
            cursor.unregister(_partition_view(name, old))
        for part in snap.sealed:
            if part.id not in registered_ids:
                cursor.register(_partition_view(name, part.id), part.data)
        if known is None or open_id != known.open_id:
            cursor.register(_open_view(name), snap.open.data if snap.open else snap.schema.empty_table())
        if known is None or ids != known.partition_ids:
            cursor.execute(f'CREATE OR REPLACE TEMP VIEW "{name}" AS {_union_sql(name, snap.sealed)}')
        session.tables[name] = _RegisteredTable(ids, open_id)


def _partition_view(table: str, partition_id: int) -> str:
    return f"__tdb_{table}_{partition_id}"


def _open_view(table: str) -> str:
    return f"__tdb_{table}_open"


def _union_sql(table: str, sealed: tuple[Partition, ...]) -> str:
    branches = [
        f"SELECT * FROM {_partition_view(table, p.id)} WHERE time_ BETWEEN "
        f"make_timestamptz({p.min_time_us}) AND make_timestamptz({p.max_time_us})"
        for p in sealed
    ]
    branches.append(f"SELECT * FROM {_open_view(table)}")
    return " UNION ALL ".join(branches)
