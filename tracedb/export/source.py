"""SQL over an export directory, with the same table names as a live collection.

    source = ParquetSource("/srv/export")
    source.query("select comm, max(rss_bytes) from process_stats group by comm")

`tracedb query --parquet DIR` and `tracedb repl --parquet DIR` use it in place
of a collector. It needs no root and no BPF (nothing here imports the
connectors), only read access to the files.

One DuckDB connection holds a view per table directory that has files:

    CREATE VIEW "<table>" AS SELECT * EXCLUDE (date, hour)
    FROM read_parquet('DIR/<table>/**/*.parquet', hive_partitioning = true, union_by_name = true)

The hive columns `date` and `hour` are left out of `select *` so that the
columns are those of the live table; a query bounded on `time_` still skips
files and row groups through the Parquet statistics of `time_`. The glob is
expanded at each query, so files written since the source opened are seen
(a table that gets its first file later needs a new source). Temporary files
of a writer are never read: see layout.py.
"""

from __future__ import annotations

import threading
from pathlib import Path

import duckdb
import pyarrow as pa

from tracedb.export.layout import scan, table_glob
from tracedb.schema import TableSchema, builtin_schemas
from tracedb.storage import QueryError


class ParquetSource:
    def __init__(self, directory: Path | str):
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise ValueError(f"no export directory {self.directory}")
        self.tables = scan(self.directory).tables
        if not self.tables:
            raise ValueError(f"{self.directory} holds no exported tables (expected <table>/date=.../hour=.../part-*.parquet)")
        self._connection = duckdb.connect(":memory:")
        self._lock = threading.Lock()  # one connection: statements run one at a time
        for table in self.tables:
            self._connection.execute(f'CREATE VIEW "{table}" AS {_view_sql(self.directory, table)}')

    def query(self, sql: str) -> pa.Table | None:
        """Run one or more statements; the last one's rows, or None if it returns none."""
        with self._lock:
            try:
                relation = self._connection.sql(sql)
                return None if relation is None else relation.to_arrow_table()
            except duckdb.Error as e:
                raise QueryError(str(e)) from None

    def interrupt(self) -> None:
        """Cancel the running statement (Ctrl-C in the prompt)."""
        self._connection.interrupt()

    def table_schemas(self) -> dict[str, TableSchema]:
        """The schemas of the tables exported here (those this tracedb knows)."""
        known = builtin_schemas()
        return {table: known[table] for table in self.tables if table in known}

    def status(self) -> None:
        """Exported data has no collector status to show."""
        return None

    def close(self) -> None:
        self._connection.close()


def _view_sql(directory: Path, table: str) -> str:
    glob = table_glob(directory, table).replace("'", "''")
    return (
        f"SELECT * EXCLUDE (date, hour) FROM read_parquet('{glob}', hive_partitioning = true, union_by_name = true)"
    )
