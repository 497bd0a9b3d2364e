"""Where exported rows go: the directory layout and the names of its files.

    DIR/<table>/date=YYYY-MM-DD/hour=H/part-<run>-<seq>.parquet

Hive partitions by table and by the UTC hour of `time_`, which DuckDB
(`hive_partitioning = true`), pyarrow (`partitioning="hive"`) and Spark read as
the columns `date` and `hour`. Hours are not zero-padded (`hour=7`): DuckDB
reads a value like `07` as text, and then every hour of the table as text. `<run>` numbers the tracedb processes that wrote
into DIR, `<seq>` the files of one run, so no two writers ever pick one name.

A file is written as `.part-<run>-<seq>.parquet.tmp` next to its final name and
renamed when complete. Both halves of that temporary name matter: pyarrow and
Spark skip names starting with `.` or `_`, but DuckDB's `**/*.parquet` glob
does not skip hidden files; it only misses them because of the `.tmp` suffix.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

US_PER_HOUR = 3600 * 1_000_000
PART_NAME = re.compile(r"part-(\d+)-(\d+)\.parquet")
TEMP_NAME = re.compile(r"\.part-\d+-\d+\.parquet\.tmp")


def part_path(directory: Path, table: str, hour: int, run: int, seq: int) -> Path:
    """The final path of a file of `table` holding rows of `hour` (hours since the epoch)."""
    start = dt.datetime.fromtimestamp(hour * 3600, dt.UTC)
    return directory / table / f"date={start:%Y-%m-%d}" / f"hour={start.hour}" / f"part-{run:06d}-{seq:06d}.parquet"


def temp_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.tmp")


def split_by_hour(rows: pa.Table) -> list[tuple[int, pa.Table]]:
    """The rows grouped by the UTC hour of their time_ (hours since the epoch), oldest first."""
    hours = rows.column("time_").cast(pa.int64()).to_numpy() // US_PER_HOUR
    return [(int(hour), rows.filter(pa.array(hours == hour))) for hour in np.unique(hours)]


def table_glob(directory: Path, table: str) -> str:
    """The glob of a table's files, as DuckDB's read_parquet takes it."""
    return str(directory / table / "**" / "*.parquet")


@dataclass(frozen=True)
class PartFile:
    path: Path
    table: str
    run: int
    seq: int


@dataclass
class Scan:
    """What an export directory holds: finished files, and temporary files of killed writers."""

    parts: list[PartFile]
    temps: list[Path]

    @property
    def tables(self) -> list[str]:
        return sorted({p.table for p in self.parts})


def scan(directory: Path) -> Scan:
    found = Scan([], [])
    for table_dir in _table_dirs(directory):
        for root, _, names in os.walk(table_dir):
            for name in names:
                _classify(found, table_dir.name, Path(root) / name)
    return found


def _table_dirs(directory: Path) -> list[Path]:
    # `_` and `.` entries are the exporter's own (state, lock) or someone else's hidden files
    return [d for d in directory.iterdir() if d.is_dir() and not d.name.startswith(("_", "."))]


def _classify(found: Scan, table: str, path: Path) -> None:
    if TEMP_NAME.fullmatch(path.name):
        found.temps.append(path)
    elif match := PART_NAME.fullmatch(path.name):
        found.parts.append(PartFile(path, table, int(match[1]), int(match[2])))
