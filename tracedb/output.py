"""Turning query results (Arrow tables) into text: the named output formats.

For people:

- table:    aligned columns, numbers right-aligned, NULL shown as such;
- line:     one record after the other, one `column = value` line each (for
            results too wide for a table);
- markdown: a GitHub-flavoured Markdown table.

For programs:

- csv:   RFC 4180 with a header row;
- json:  one JSON array of objects;
- jsonl: one JSON object per line.

Formats for people end with a row count, may show only the first rows (with
the total said), and show durations and byte counts readably (`1.5 ms`,
`12.3 MiB`) for the columns given a unit (see `display_units`). Formats for
programs keep every row and raw values (integers stay integers, times are ISO
8601 strings with their offset).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import threading
from collections.abc import Callable, Iterable
from typing import TextIO

import pyarrow as pa

from tracedb.schema import TableSchema

NULL = "NULL"


def _json_value(value):
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def format_json(table: pa.Table) -> str:
    return json.dumps(table.to_pylist(), default=_json_value) + "\n"


def format_jsonl(table: pa.Table) -> str:
    return "".join(json.dumps(row, default=_json_value) + "\n" for row in table.to_pylist())


def format_csv(table: pa.Table) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table.column_names)
    for row in table.to_pylist():
        writer.writerow(_text(v, empty_null=True) for v in row.values())
    return out.getvalue()


def _text(value, empty_null: bool = False) -> str:
    if value is None:
        return "" if empty_null else NULL
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _is_number(arrow_type: pa.DataType) -> bool:
    return pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type)


def _cells(table: pa.Table, units: dict[str, str] | None) -> list[list[str]]:
    """Every value as one line of text, humanised where `units` gives a unit."""
    shows = [
        _UNIT_TEXT[units[name]] if units and units.get(name) in _UNIT_TEXT and _is_number(t) else _text
        for name, t in zip(table.column_names, table.schema.types)
    ]
    rows = table.to_pylist()
    return [[_one_line(show(v) if v is not None else NULL) for show, v in zip(shows, row.values())] for row in rows]


def _one_line(text: str) -> str:
    return text.replace("\n", "\\n")


def row_count(shown: int, total: int | None = None) -> str:
    """'(3 rows)', or '(1000 rows, first 100 shown)' when a result was cut short."""
    total = shown if total is None else total
    text = f"({total} row{'s' if total != 1 else ''}"
    return text + (f", first {shown} shown)\n" if shown < total else ")\n")


def format_table(table: pa.Table, units: dict[str, str] | None = None, total_rows: int | None = None) -> str:
    names = table.column_names
    if not names:
        return "(no columns)\n"
    right = [_is_number(t) for t in table.schema.types]
    cells = _cells(table, units)
    widths = [max([len(n)] + [len(r[i]) for r in cells]) for i, n in enumerate(names)]

    def line(values: list[str], align: bool = True) -> str:
        parts = [v.rjust(w) if align and r else v.ljust(w) for v, w, r in zip(values, widths, right)]
        return "| " + " | ".join(parts) + " |"

    rule = "+-" + "-+-".join("-" * w for w in widths) + "-+"
    body = [line(r) for r in cells]
    return "\n".join([rule, line(names, align=False), rule, *body, rule]) + "\n" + row_count(table.num_rows, total_rows)


def format_line(table: pa.Table, units: dict[str, str] | None = None, total_rows: int | None = None) -> str:
    """Records one after the other, a blank line between them, names right-aligned."""
    width = max(map(len, table.column_names), default=0)
    records = [
        "".join(f"{name.rjust(width)} = {value}\n" for name, value in zip(table.column_names, row))
        for row in _cells(table, units)
    ]
    return "\n".join(records) + ("\n" if records else "") + row_count(table.num_rows, total_rows)


def format_markdown(table: pa.Table, units: dict[str, str] | None = None, total_rows: int | None = None) -> str:
    def line(values) -> str:
        return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |\n"

    rule = ["---:" if _is_number(t) else "---" for t in table.schema.types]
    body = "".join(line(row) for row in _cells(table, units))
    return line(table.column_names) + "|" + "|".join(rule) + "|\n" + body + "\n" + row_count(table.num_rows, total_rows)


# -- readable durations and sizes (formats for people only) -------------------

_NS_PER = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
_SUFFIX_UNITS = {"_ns": "ns", "_us": "us", "_ms": "ms", "_bytes": "bytes"}


def _short(number: float) -> str:
    return f"{number:.3g}" if abs(number) < 999.5 else f"{number:.4g}"  # 1023 B stays 1023, not 1.02e+03


def human_duration(ns: float) -> str:
    """1500000 -> '1.5 ms'; past a minute, minutes and seconds (past an hour, hours and minutes)."""
    size = abs(float(ns))  # sums come back as decimals
    if not math.isfinite(size):
        return str(ns)
    sign = "-" if ns < 0 else ""
    if size >= 3600e9:
        hours, rest = divmod(round(size / 1e9), 3600)
        return f"{sign}{hours} h {rest // 60} min"
    if size >= 60e9:
        minutes, rest = divmod(round(size / 1e9), 60)
        return f"{sign}{minutes} min {rest} s"
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if size >= scale:
            return f"{sign}{_short(size / scale)} {unit}"
    return f"{sign}{_short(size)} ns"


def human_bytes(count: float) -> str:
    """12897484 -> '12.3 MiB' (powers of 1024, as `free -h` and `ls -h` count)."""
    size = abs(float(count))
    if not math.isfinite(size):
        return str(count)
    sign = "-" if count < 0 else ""
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{sign}{_short(size / scale)} {unit}"
    return f"{sign}{_short(size)} B"


_UNIT_TEXT: dict[str, Callable[[float], str]] = {
    **{unit: (lambda value, scale=scale: human_duration(float(value) * scale)) for unit, scale in _NS_PER.items()},
    "bytes": human_bytes,
}


def display_units(column_names: list[str], schemas: Iterable[TableSchema]) -> dict[str, str]:
    """The unit to show each result column in: that of a same-named column of
    the queried tables' schemas, else the one its name's suffix says (`_ns`,
    `_bytes`). Columns with neither are absent."""
    declared = {c.name: c.unit for s in schemas for c in s.columns if c.unit in _UNIT_TEXT}
    units = {}
    for name in column_names:
        unit = declared.get(name) or next((u for sfx, u in _SUFFIX_UNITS.items() if name.endswith(sfx)), None)
        if unit is not None:
            units[name] = unit
    return units


def describe_schema(schema: TableSchema) -> str:
    """A table's description and its columns with type, unit and description."""
    rows = [{"column": c.name, "type": c.type, "unit": c.kind, "description": c.description} for c in schema.columns]
    text = f"{schema.name}: {schema.description}\n"
    if schema.origin:
        text += f"(columns: {schema.origin})\n"
    return text + format_table(pa.Table.from_pylist(rows))


HUMAN_FORMATS = {"table": format_table, "line": format_line, "markdown": format_markdown}
MACHINE_FORMATS: dict[str, Callable[[pa.Table], str]] = {
    "csv": format_csv,
    "json": format_json,
    "jsonl": format_jsonl,
}
FORMATS = {**HUMAN_FORMATS, **MACHINE_FORMATS}


def render(table: pa.Table, fmt: str, units: dict[str, str] | None = None, max_rows: int | None = None) -> str:
    """`table` in format `fmt`; formats for people use `units` and show at most `max_rows` rows."""
    if fmt in MACHINE_FORMATS:
        return MACHINE_FORMATS[fmt](table)
    if fmt not in HUMAN_FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    shown = table if max_rows is None else table.slice(0, max_rows)
    return HUMAN_FORMATS[fmt](shown, units, table.num_rows)


class StreamPrinter:
    """Prints batches of several tables as they arrive (`tracedb run --print`).

    Rows of different tables interleave, so each carries its table's name: a
    heading per batch in table format, a leading `table` column in csv, a
    "table" key in json and jsonl (both one object per line when streaming).
    Called from connector threads; one lock keeps the lines whole.
    """

    def __init__(self, out: TextIO, fmt: str):
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
        self.out, self.fmt = out, fmt
        self._lock = threading.Lock()
        self._csv_headers_done: set[str] = set()

    def print_batch(self, table_name: str, batch: pa.RecordBatch) -> None:
        table = pa.Table.from_batches([batch])
        with self._lock:
            self.out.write(self._render(table_name, table))
            self.out.flush()

    def _render(self, table_name: str, table: pa.Table) -> str:
        if self.fmt in HUMAN_FORMATS:
            return f"-- {table_name}\n" + render(table, self.fmt)
        labelled = table.add_column(0, "table", pa.array([table_name] * table.num_rows, pa.string()))
        if self.fmt != "csv":
            return format_jsonl(labelled)
        text = format_csv(labelled)
        if table_name in self._csv_headers_done:
            text = text.split("\n", 1)[1]
        self._csv_headers_done.add(table_name)
        return text
