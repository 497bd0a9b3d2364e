"""What the REPL queries: the query source protocol.

A live `Collector` is one; `tracedb.export.ParquetSource` (exported files, no
collector) is another. The REPL needs nothing else from either.
"""

from __future__ import annotations

from typing import Protocol

import pyarrow as pa

from tracedb.schema import TableSchema


class QuerySource(Protocol):
    def query(self, sql: str) -> pa.Table | None:
        """Run SQL; the last statement's rows, or None when it returns none.

        Raises tracedb.storage.QueryError with DuckDB's message when a statement fails.
        """

    def interrupt(self) -> None:
        """Cancel the query running now; called from another thread."""

    def table_schemas(self) -> dict[str, TableSchema]:
        """The tables that have a schema file, by name."""

    def status(self) -> pa.Table | None:
        """The connectors' state (tracedb_connectors rows), or None without a collector."""
