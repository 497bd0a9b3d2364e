"""Continuous export: every row a collection appends, written once into an export directory.

    exporter = ContinuousExporter(collector, "/srv/export", every_s=10)
    with exporter, collector:      # the collector stops first: its last rows...
        ...
    # ...are in the final pass, run when the exporter stops

A pass runs every `every_s` seconds in the exporter's own thread. It holds the
store's lock only to take a snapshot (rows.py), so connectors and queries never
wait for Parquet encoding or the disk.

Exactly once: per table the exporter remembers how far along the sequence of
rows ever appended it has got (rows.py); a pass writes the rows after that
point and then moves it to the end of what it read. Rows retention dropped
before a pass reached them are counted as lost (state file, log, and the
`tracedb_export` table) instead of written. A pass that fails while writing
left nothing visible and is retried with the same rows; one that fails while
renaming left part of its files visible, so the export stops rather than write
those rows twice. Across restarts each process exports only the rows it
collected itself, under its own run number (writer.py).

Status: the virtual table `tracedb_export`, added to the collector's SQL.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from tracedb.export.rows import counters, held_rows
from tracedb.export.writer import ExportDir, ExportHalted, ExportSummary, TableExport
from tracedb.schema import get_schema

EXPORT_TABLE = "tracedb_export"


class ContinuousExporter:
    def __init__(self, collector, out_dir: Path | str, every_s: float, log: Callable[[str], None] | None = None):
        if every_s <= 0:
            raise ValueError(f"the export period must be positive, got {every_s}")
        self.every_s = every_s
        self._store = collector.store
        self._log = log or (lambda message: print(f"tracedb: export: {message}", file=sys.stderr, flush=True))
        self._dir = ExportDir(out_dir, kind="continuous")
        for note in self._dir.notes:
            self._log(note)
        # per table: rows numbered below this are exported or counted lost (see rows.py)
        self._exported_upto = {table: 0 for table in self._store.table_names}
        self._last_pass_us: int | None = None
        self._error = ""
        self._halted = False
        self._mutex = threading.Lock()  # the fields above are read by status queries
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tracedb-export", daemon=True)
        self._summary: ExportSummary | None = None
        collector.engine.add_virtual_table(EXPORT_TABLE, self.status)

    def start(self) -> ContinuousExporter:
        self._thread.start()
        self._log(f"writing {self._dir.directory} every {self.every_s:g} s as run {self._dir.run}")
        return self

    def stop(self) -> ExportSummary:
        """Stop the passes, run a final one for the rows appended since, and close the run."""
        if self._summary is None:
            self._stop.set()
            if self._thread.is_alive():
                self._thread.join()
            self._pass()
            self._summary = self._dir.close()
            self._log(str(self._summary).rstrip())
        return self._summary

    def __enter__(self) -> ContinuousExporter:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s) and not self._halted:
            self._pass()

    def _pass(self) -> None:
        """One export_pending, its failure reported rather than raised: the passes must go on."""
        if self._halted:
            return
        try:
            self.export_pending()
            error = ""
        except ExportHalted as e:
            self._halted = True
            error = str(e)
        except Exception as e:
            error = f"{type(e).__name__}: {e} (retried at the next pass)"
        if error and error != self._error:
            self._log(error)
        with self._mutex:
            self._error = error

    def export_pending(self) -> None:
        """Write every row appended since the last pass; count those retention dropped first."""
        held = held_rows(self._store, self._store.table_names)
        upto = self._exported_upto
        new_rows = {t: h.from_number(upto[t]) for t, h in held.items() if h.end > max(upto[t], h.first)}
        lost = {t: h.first - upto[t] for t, h in held.items() if h.first > upto[t]}
        if new_rows or lost:
            self._dir.publish(new_rows, lost)
        with self._mutex:
            self._exported_upto = {t: h.end for t, h in held.items()}
            self._last_pass_us = time.time_ns() // 1000
        for table, count in lost.items():
            self._log(
                f"{count} rows of {table} were dropped by retention before they could be exported "
                "(raise --retention-bytes/--retention-age or lower --export-every)"
            )

    def status(self) -> pa.Table:
        """The rows of `tracedb_export`: per table, exported, pending and lost rows."""
        now_us = time.time_ns() // 1000
        appended_dropped = counters(self._store)
        exported = self._dir.summary().record
        with self._mutex:
            upto, last_pass_us, error = dict(self._exported_upto), self._last_pass_us, self._error
        rows = []
        for table, (appended, dropped) in appended_dropped.items():
            counts = exported.tables.get(table, TableExport())
            rows.append(
                {
                    "time_": now_us,
                    "table_name": table,
                    "directory": str(self._dir.directory),
                    "run": exported.run,
                    "rows_exported": counts.rows,
                    "files": counts.files,
                    "rows_pending": appended - max(upto[table], dropped),
                    "rows_lost": counts.rows_lost + max(0, dropped - upto[table]),  # the next pass counts the latter
                    "newest_exported": counts.newest_us,
                    "last_pass": last_pass_us,
                    "error": error,
                }
            )
        return pa.Table.from_pylist(rows, schema=get_schema(EXPORT_TABLE).arrow_schema)
