"""Parquet export: the store's rows as files any engine reads, and SQL over them.

    DIR/<table>/date=YYYY-MM-DD/hour=H/part-<run>-<seq>.parquet     zstd, hive partitions by UTC hour
    DIR/_tracedb_export.json                                        what each run wrote (and lost)

- layout.py      the directory layout, file names, temporary names
- writer.py      `ExportDir`: one writer's lock, atomic files, the state file, recovery after a kill
- rows.py        which rows of the store are new to an export, and which retention took first
- oneshot.py     `export_tables`: what a collection holds now (`tracedb export`, the REPL's `.export`)
- continuous.py  `ContinuousExporter`: every row once, while collecting (`tracedb run --export-dir`)
- source.py      `ParquetSource`: SQL over DIR with the live table names (`--parquet DIR`), no root

The files carry the tables' Arrow schemas, column descriptions included as
field metadata. Each file appears complete or not at all: it is written under
a hidden temporary name and renamed.
"""

from tracedb.export.continuous import EXPORT_TABLE, ContinuousExporter
from tracedb.export.oneshot import export_tables, parse_time
from tracedb.export.source import ParquetSource
from tracedb.export.writer import ExportError, ExportSummary

__all__ = [
    "EXPORT_TABLE",
    "ContinuousExporter",
    "ExportError",
    "ExportSummary",
    "ParquetSource",
    "export_tables",
    "parse_time",
]
