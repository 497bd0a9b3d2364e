"""The names the REPL knows: tables with their columns, functions, keywords.

Two places supply them: the schema files (the query source's
`table_schemas()`, so a table is known with its columns before it holds a
row) and the live DuckDB catalog, read with plain SQL, so that views and tables
users create appear too. The session rebuilds the catalog after statements
that change it (CREATE, DROP, ...); completion only ever reads a `Catalog`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# Names starting with "__" are DuckDB's and tracedb's internals (the store's
# per-partition views among them), not something to offer.
LIVE_COLUMNS_SQL = """
    select table_name, column_name from information_schema.columns
    where not starts_with(table_name, '__')
    order by table_name, ordinal_position
"""
# Pragmas are not called in expressions, and collations (collate_de, ...) are
# functions nobody calls by name: both would only crowd the menu.
FUNCTIONS_SQL = """
    select distinct function_name from duckdb_functions()
    where regexp_full_match(function_name, '[a-z][a-z0-9_]*')
      and function_type <> 'pragma' and not starts_with(function_name, 'collate_')
    order by function_name
"""
KEYWORDS_SQL = """
    select upper(keyword_name) as keyword from duckdb_keywords()
    where keyword_category in ('reserved', 'unreserved')
    order by keyword
"""


@dataclass(frozen=True)
class Catalog:
    tables: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # table -> its columns
    functions: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()

    def find_table(self, name: str) -> str | None:
        """The catalog's spelling of a table name, matched without regard to case."""
        if name in self.tables:
            return name
        return next((t for t in self.tables if t.lower() == name.lower()), None)

    def columns(self, table: str) -> tuple[str, ...]:
        found = self.find_table(table)
        return self.tables[found] if found is not None else ()


def load_catalog(source) -> Catalog:
    """Read the catalog through a query source (see tracedb.repl.source)."""
    live: dict[str, list[str]] = {}
    for row in source.query(LIVE_COLUMNS_SQL).to_pylist():
        live.setdefault(row["table_name"], []).append(row["column_name"])
    declared = {name: tuple(schema.column_names) for name, schema in source.table_schemas().items()}
    return Catalog(
        tables={**{name: tuple(cols) for name, cols in live.items()}, **declared},
        functions=tuple(source.query(FUNCTIONS_SQL).column(0).to_pylist()),
        keywords=tuple(source.query(KEYWORDS_SQL).column(0).to_pylist()),
    )
