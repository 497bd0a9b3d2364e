"""Table schemas: the one declaration of every table tracedb publishes.

Each table is described by `schemas/<table>.toml` (shipped inside the package as
`tracedb.schemas`). This module loads and validates those files and derives what
the rest of the program needs from them: Arrow schemas for the store, column
descriptions for `tracedb schema` and the prompt, units for display.

File format::

    name = "process_stats"
    description = "CPU, memory and I/O counters of every process, sampled every second."
    origin = "Stirling's process_stats"      # optional: where the columns come from

    [[columns]]
    name = "time_"
    type = "time"
    description = "When the sample was taken."

    [[columns]]
    name = "rss_bytes"
    type = "int64"
    unit = "bytes"
    description = "Resident set size."

Rules checked at load: a name and description for the table and every column,
`time_` of type `time` first, no duplicate column names, a known type, and for
every numeric column either a `unit` (what the number counts) or a `semantic`
(what kind of identifier it is).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache, cached_property
from importlib import resources
from pathlib import Path

import pyarrow as pa

# time_ is microseconds in UTC because DuckDB maps it to TIMESTAMP WITH TIME ZONE,
# the type `now() - interval '1 minute'` compares with; DuckDB's nanosecond
# TIMESTAMPTZ_NS does not work with now(), date_trunc() and friends. Durations
# keep nanoseconds as integers.
TIME_TYPE = pa.timestamp("us", tz="UTC")

ARROW_TYPES: dict[str, pa.DataType] = {
    "time": TIME_TYPE,
    "bool": pa.bool_(),
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "uint8": pa.uint8(),
    "uint16": pa.uint16(),
    "uint32": pa.uint32(),
    "uint64": pa.uint64(),
    "float64": pa.float64(),
    "string": pa.string(),
    "json": pa.string(),
}

NUMERIC_TYPES = {name for name, t in ARROW_TYPES.items() if pa.types.is_integer(t) or pa.types.is_floating(t)}

# What a number counts; the display layer formats ns and bytes for people.
UNITS = {"ns", "us", "ms", "s", "bytes", "count", "ticks", "percent", "pages"}
# What kind of identifier a number or string is, when it is not a quantity.
SEMANTICS = {
    "upid", "pid", "uid", "gid", "ip_addr", "port", "enum", "id", "path", "text",
    "name", "code", "signal", "version", "json",
}


class SchemaError(ValueError):
    """A schema file breaks one of the rules above."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    description: str
    unit: str | None = None
    semantic: str | None = None

    @property
    def arrow_type(self) -> pa.DataType:
        return ARROW_TYPES[self.type]

    @property
    def kind(self) -> str:
        """Unit or semantic type, as shown to people ("" when neither applies)."""
        return self.unit or self.semantic or ""


@dataclass(frozen=True)
class TableSchema:
    name: str
    description: str
    columns: tuple[Column, ...]
    origin: str = ""

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")

    @cached_property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema(
            [
                pa.field(c.name, c.arrow_type, metadata={"description": c.description, "kind": c.kind})
                for c in self.columns
            ],
            metadata={"table": self.name, "description": self.description},
        )

    def empty_table(self) -> pa.Table:
        return self.arrow_schema.empty_table()


def parse_schema(text: str, source: str = "<string>") -> TableSchema:
    """Parse and validate one schema file's text; `source` names it in errors."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SchemaError(f"{source}: not valid TOML: {e}") from None
    name = _required(doc, "name", source)
    where = f"{source} (table {name})"
    description = _required(doc, "description", where)
    raw_columns = doc.get("columns")
    if not isinstance(raw_columns, list) or not raw_columns:
        raise SchemaError(f"{where}: needs a [[columns]] list")
    columns = tuple(_parse_column(c, i, where) for i, c in enumerate(raw_columns))
    _check_columns(columns, where)
    return TableSchema(name=name, description=description, columns=columns, origin=doc.get("origin", ""))


def _required(doc: dict, key: str, where: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value.strip():
        raise SchemaError(f"{where}: `{key}` is missing or empty")
    return value.strip()


def _parse_column(raw: dict, index: int, where: str) -> Column:
    if not isinstance(raw, dict):
        raise SchemaError(f"{where}: column #{index + 1} is not a table")
    name = _required(raw, "name", f"{where}, column #{index + 1}")
    here = f"{where}, column {name}"
    col_type = _required(raw, "type", here)
    if col_type not in ARROW_TYPES:
        raise SchemaError(f"{here}: unknown type {col_type!r} (known: {', '.join(sorted(ARROW_TYPES))})")
    unit, semantic = raw.get("unit"), raw.get("semantic")
    if unit is not None and unit not in UNITS:
        raise SchemaError(f"{here}: unknown unit {unit!r} (known: {', '.join(sorted(UNITS))})")
    if semantic is not None and semantic not in SEMANTICS:
        raise SchemaError(f"{here}: unknown semantic {semantic!r} (known: {', '.join(sorted(SEMANTICS))})")
    if col_type in NUMERIC_TYPES and unit is None and semantic is None:
        raise SchemaError(f"{here}: a numeric column needs a `unit` or a `semantic`")
    unknown = set(raw) - {"name", "type", "description", "unit", "semantic"}
    if unknown:
        raise SchemaError(f"{here}: unknown keys {sorted(unknown)}")
    return Column(name=name, type=col_type, description=_required(raw, "description", here), unit=unit, semantic=semantic)


def _check_columns(columns: tuple[Column, ...], where: str) -> None:
    if columns[0].name != "time_" or columns[0].type != "time":
        raise SchemaError(f"{where}: the first column must be `time_` of type time")
    seen: set[str] = set()
    for c in columns:
        if c.name in seen:
            raise SchemaError(f"{where}: column {c.name} is declared twice")
        seen.add(c.name)


def load_schema_dir(directory: Path) -> dict[str, TableSchema]:
    """Load every `*.toml` in a directory; the file stem must equal the table name."""
    schemas: dict[str, TableSchema] = {}
    for path in sorted(Path(directory).glob("*.toml")):
        schema = parse_schema(path.read_text(), str(path))
        if schema.name != path.stem:
            raise SchemaError(f"{path}: declares table {schema.name!r}; the file must be named {schema.name}.toml")
        schemas[schema.name] = schema
    return schemas


@cache
def builtin_schemas() -> dict[str, TableSchema]:
    """The schemas shipped with tracedb, by table name."""
    with resources.as_file(resources.files("tracedb.schemas")) as directory:
        return load_schema_dir(directory)


def get_schema(table: str) -> TableSchema:
    try:
        return builtin_schemas()[table]
    except KeyError:
        raise KeyError(f"no table {table!r}; known tables: {', '.join(sorted(builtin_schemas()))}") from None
