"""One-shot export: what a running collection holds now, written into an export directory.

    export_tables(collector, "/srv/export", tables=["process_stats"], since="-10m")

`tracedb export` and the REPL's `.export DIR [tables] [since] [until]` call it.
The rows come from one consistent snapshot of the store; `since` and `until`
keep the rows with since <= time_ < until. Per table the summary also counts
the rows retention had dropped before the export: their times are gone with
them, so since/until do not narrow that count.

Times (`parse_time`): a datetime, 'now', a duration before now ('-10m' or
'10m'; units s, m, h, d), or an ISO date and time ('2026-11-21 22:00',
'2026-11-21T22:00:00+01:00'). Without a zone a time is UTC, the zone of
`time_` and of the hour partitions.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from tracedb.export.rows import held_rows
from tracedb.export.writer import ExportDir, ExportSummary
from tracedb.storage import TableStore

TimeSpec = str | dt.datetime
RELATIVE = re.compile(r"-?\s*(\d+(?:\.\d+)?)\s*([smhd])")
SECONDS_PER_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def export_tables(
    collector,
    out_dir: Path | str,
    tables: Sequence[str] | str | None = None,
    since: TimeSpec | None = None,
    until: TimeSpec | None = None,
) -> ExportSummary:
    """Write the rows `collector` holds now (all its tables by default) into `out_dir`."""
    names = _selected_tables(collector.store, tables)
    now_us = time.time_ns() // 1000
    since_us = INT64_MIN if since is None else parse_time(since, now_us)
    until_us = INT64_MAX if until is None else parse_time(until, now_us)
    if since_us >= until_us:
        raise ValueError(f"--since ({since}) must be before --until ({until})")
    held = held_rows(collector.store, names)
    export_dir = ExportDir(out_dir, kind="export")
    try:
        rows = {table: _between(h.rows, since_us, until_us) for table, h in held.items()}
        export_dir.publish(rows, {table: h.first for table, h in held.items()})
    finally:
        summary = export_dir.close()
    return summary


def _selected_tables(store: TableStore, tables: Sequence[str] | str | None) -> list[str]:
    if tables is None:
        return store.table_names
    names = [t.strip() for t in tables.split(",")] if isinstance(tables, str) else list(tables)
    unknown = [t for t in names if t not in store.table_names]
    if unknown:
        raise ValueError(f"this collection has no table {', '.join(unknown)}; it has {', '.join(store.table_names)}")
    return names


def _between(rows: pa.Table, since_us: int, until_us: int) -> pa.Table:
    times = rows.column("time_").cast(pa.int64())
    return rows.filter(pc.and_(pc.greater_equal(times, since_us), pc.less(times, until_us)))


def parse_time(value: TimeSpec, now_us: int | None = None) -> int:
    """A point in time as microseconds since the epoch (forms: see the module docstring)."""
    now_us = time.time_ns() // 1000 if now_us is None else now_us
    if isinstance(value, dt.datetime):
        return _epoch_us(value)
    text = value.strip()
    if text == "now":
        return now_us
    if match := RELATIVE.fullmatch(text):
        return now_us - int(float(match[1]) * SECONDS_PER_UNIT[match[2]] * 1_000_000)
    try:
        return _epoch_us(dt.datetime.fromisoformat(text))
    except ValueError:
        raise ValueError(
            f"not a time: {value!r} (examples: -10m, 2h, 'now', '2026-11-21 22:00', 2026-11-21T22:00+01:00)"
        ) from None


def _epoch_us(value: dt.datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return (value - EPOCH) // dt.timedelta(microseconds=1)
