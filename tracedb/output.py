"""Turning query results (Arrow tables) into text: the named output formats.

- table: aligned columns for people, numbers right-aligned, NULL shown as such;
- csv:   RFC 4180 with a header row;
- json:  one JSON array of objects;
- jsonl: one JSON object per line.

Machine formats keep raw values (integers stay integers, times are ISO 8601
strings with their offset).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import threading
from collections.abc import Callable
from typing import TextIO

import pyarrow as pa

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


def format_table(table: pa.Table) -> str:
    names = table.column_names
    if not names:
        return "(no columns)\n"
    right = [pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t) for t in table.schema.types]
    cells = [[_text(v).replace("\n", "\\n") for v in row.values()] for row in table.to_pylist()]
    widths = [max([len(n)] + [len(r[i]) for r in cells]) for i, n in enumerate(names)]

    def line(values: list[str], align: bool = True) -> str:
        parts = [v.rjust(w) if align and r else v.ljust(w) for v, w, r in zip(values, widths, right)]
        return "| " + " | ".join(parts) + " |"

    rule = "+-" + "-+-".join("-" * w for w in widths) + "-+"
    body = [line(r) for r in cells]
    count = f"({table.num_rows} row{'s' if table.num_rows != 1 else ''})"
    return "\n".join([rule, line(names, align=False), rule, *body, rule, count]) + "\n"


FORMATS: dict[str, Callable[[pa.Table], str]] = {
    "table": format_table,
    "csv": format_csv,
    "json": format_json,
    "jsonl": format_jsonl,
}


def render(table: pa.Table, fmt: str) -> str:
    try:
        return FORMATS[fmt](table)
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}") from None


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
        if self.fmt == "table":
            return f"-- {table_name}\n" + format_table(table)
        labelled = table.add_column(0, "table", pa.array([table_name] * table.num_rows, pa.string()))
        if self.fmt != "csv":
            return format_jsonl(labelled)
        text = format_csv(labelled)
        if table_name in self._csv_headers_done:
            text = text.split("\n", 1)[1]
        self._csv_headers_done.add(table_name)
        return text
