"""The table store: time-partitioned Arrow tables (table.py), the store that
holds them all (store.py), and SQL over them in DuckDB (sql.py)."""

from tracedb.storage.sql import QueryEngine, QueryError
from tracedb.storage.store import TableStore
from tracedb.storage.table import Retention

__all__ = ["QueryEngine", "QueryError", "Retention", "TableStore"]
