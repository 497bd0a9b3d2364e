"""Writing into an export directory: one writer at a time, atomic files, a state file.

`ExportDir` is one process's hold on DIR for one run (see layout.py for names):

- A lock (`DIR/_tracedb_export.lock`, flock, released when the process dies)
  keeps a second exporter out while one writes; it is refused with the pid of
  the first.
- The state file `DIR/_tracedb_export.json` holds one record per run: its
  kind, pid and times, and per table the files and rows it wrote, the newest
  `time_` among them and the rows retention dropped before they could be
  written. It is replaced atomically (write, fsync, rename) after every
  publish.
- Opening DIR cleans up after a writer that was killed: its temporary files
  are removed, and a run still recorded as running (its process is gone, since
  we got the lock) gets the files it renamed after its last state update
  counted into its record and is marked `interrupted`.
- A run's number is one more than any run recorded or seen in a file name,
  and is recorded before its first file is written.

`publish` writes some tables' rows: first every file under its temporary name
(written and fsynced), then renames them all, so a reader sees each file
complete or not at all. A failure while writing removes the pass's temporary
files and leaves nothing visible: the caller may retry the same rows. A
failure while renaming leaves a pass half visible; `ExportHalted` says so, and
a caller must not write those rows again.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import fcntl
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tracedb.export.layout import PartFile, part_path, scan, split_by_hour, temp_path

STATE_FILE = "_tracedb_export.json"
LOCK_FILE = "_tracedb_export.lock"
STATE_VERSION = 1


class ExportError(ValueError):
    """The export directory cannot be used: held by another exporter, or its state file is unreadable."""


class ExportHalted(RuntimeError):
    """Some files of a pass became visible and others could not: the pass must not be retried."""


@dataclass
class TableExport:
    """What one run exported of one table."""

    rows: int = 0
    files: int = 0
    rows_lost: int = 0  # dropped by retention before they could be exported
    newest_us: int | None = None

    def add_file(self, rows: pa.Table) -> None:
        self.rows += rows.num_rows
        self.files += 1
        newest = pc.max(rows.column("time_")).cast(pa.int64()).as_py()
        self.newest_us = newest if self.newest_us is None else max(self.newest_us, newest)


@dataclass
class RunRecord:
    """One run's entry in the state file."""

    run: int
    kind: str  # "export" (one-shot) or "continuous"
    pid: int
    started: str
    state: str = "running"  # running, finished, or interrupted (its process died)
    ended: str | None = None
    last_seq: int = 0  # the files of this run up to this sequence number are counted in `tables`
    tables: dict[str, TableExport] = field(default_factory=dict)

    @classmethod
    def from_json(cls, doc: dict) -> RunRecord:
        tables = {name: TableExport(**counts) for name, counts in doc["tables"].items()}
        return cls(**{**doc, "tables": tables})

    def table(self, name: str) -> TableExport:
        return self.tables.setdefault(name, TableExport())


@dataclass(frozen=True)
class ExportSummary:
    """What one run wrote into a directory; str() is the text shown to people."""

    directory: Path
    record: RunRecord

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.record.tables.values())

    @property
    def files(self) -> int:
        return sum(t.files for t in self.record.tables.values())

    @property
    def rows_lost(self) -> int:
        return sum(t.rows_lost for t in self.record.tables.values())

    def __str__(self) -> str:
        lines = [f"exported {_count(self.rows, 'row')} in {_count(self.files, 'file')} to {self.directory} (run {self.record.run})"]
        lines += [f"  {name}: {_describe(counts)}" for name, counts in sorted(self.record.tables.items())]
        return "\n".join(lines) + "\n"


def _describe(counts: TableExport) -> str:
    text = f"{_count(counts.rows, 'row')} in {_count(counts.files, 'file')}"
    if counts.newest_us is not None:
        text += f", newest {_iso(counts.newest_us)}"
    if counts.rows_lost:
        text += f"; {_count(counts.rows_lost, 'row')} dropped by retention before export"
    return text


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


@dataclass(frozen=True)
class _Staged:
    """A file written under its temporary name, waiting to be renamed."""

    table: str
    seq: int
    final: Path
    rows: pa.Table

    @property
    def temp(self) -> Path:
        return temp_path(self.final)


class ExportDir:
    def __init__(self, directory: Path | str, kind: str):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._mutex = threading.Lock()  # the record is read by status queries while a pass updates it
        self._seq = 0  # of the last file staged by this run
        self._lock_fd: int | None = _acquire_lock(self.directory)
        try:
            self.notes, run = self._recover()
            self._record = RunRecord(run, kind, os.getpid(), _iso_now())
            self._runs.append(self._record)
            self._save()
        except BaseException:
            self._release()
            raise

    @property
    def run(self) -> int:
        return self._record.run

    def _recover(self) -> tuple[list[str], int]:
        """Load the state and clean up after killed writers: what was found (for the log), and the next run number."""
        self._runs = _load_runs(self.directory / STATE_FILE)
        found = scan(self.directory)
        notes = []
        for temp in found.temps:
            temp.unlink(missing_ok=True)
        if found.temps:
            notes.append(f"removed {len(found.temps)} unfinished files left by a killed writer")
        for record in self._runs:
            if record.state == "running":
                notes.append(_close_interrupted(record, found.parts))
        return notes, 1 + max([r.run for r in self._runs] + [p.run for p in found.parts], default=0)

    def publish(self, rows_by_table: Mapping[str, pa.Table], lost_by_table: Mapping[str, int]) -> None:
        """Write each table's rows into new files (one per UTC hour) and count the lost rows."""
        staged = self._stage_all(rows_by_table)
        renamed: list[_Staged] = []
        try:
            for file in staged:
                os.replace(file.temp, file.final)
                renamed.append(file)
        except OSError as e:
            for file in staged[len(renamed):]:
                file.temp.unlink(missing_ok=True)
            raise ExportHalted(f"export stopped: {len(renamed)} of {len(staged)} files of a pass were renamed: {e}") from e
        finally:
            self._record_published(renamed, [*rows_by_table, *lost_by_table], lost_by_table)

    def _stage_all(self, rows_by_table: Mapping[str, pa.Table]) -> list[_Staged]:
        staged: list[_Staged] = []
        try:
            for table, rows in rows_by_table.items():
                for hour, hour_rows in split_by_hour(rows):
                    staged.append(self._stage(table, hour, hour_rows))
        except BaseException:
            for file in staged:
                file.temp.unlink(missing_ok=True)
            raise
        return staged

    def _stage(self, table: str, hour: int, rows: pa.Table) -> _Staged:
        self._seq += 1
        file = _Staged(table, self._seq, part_path(self.directory, table, hour, self.run, self._seq), rows)
        file.final.parent.mkdir(parents=True, exist_ok=True)
        try:
            pq.write_table(rows, file.temp, compression="zstd")
            _fsync(file.temp)
        except BaseException:
            file.temp.unlink(missing_ok=True)
            raise
        return file

    def _record_published(self, renamed: list[_Staged], tables: list[str], lost_by_table: Mapping[str, int]) -> None:
        for directory in {file.final.parent for file in renamed}:
            _fsync(directory)  # the new names survive a power loss as the state file will
        with self._mutex:
            for name in tables:
                self._record.table(name)
            for file in renamed:
                self._record.table(file.table).add_file(file.rows)
                self._record.last_seq = file.seq
            for name, lost in lost_by_table.items():
                self._record.table(name).rows_lost += lost
        self._save()

    def summary(self) -> ExportSummary:
        with self._mutex:
            return ExportSummary(self.directory, copy.deepcopy(self._record))

    def close(self) -> ExportSummary:
        """Mark the run finished and let other exporters in; the run's summary."""
        if self._lock_fd is not None:
            with self._mutex:
                self._record.state, self._record.ended = "finished", _iso_now()
            self._save()
            self._release()
        return self.summary()

    def _release(self) -> None:
        os.close(self._lock_fd)  # also releases the flock
        self._lock_fd = None

    def _save(self) -> None:
        with self._mutex:
            doc = {"version": STATE_VERSION, "runs": [dataclasses.asdict(r) for r in self._runs]}
        _write_atomically(self.directory / STATE_FILE, json.dumps(doc, indent=1).encode())


def _close_interrupted(record: RunRecord, parts: list[PartFile]) -> str:
    """Count the files a dead run renamed after its last state update; mark it interrupted."""
    leftovers = sorted((p for p in parts if p.run == record.run and p.seq > record.last_seq), key=lambda p: p.seq)
    for part in leftovers:
        record.table(part.table).add_file(pq.read_table(part.path, columns=["time_"]))
        record.last_seq = part.seq
    record.state = "interrupted"
    return (
        f"run {record.run} (pid {record.pid}) ended without finishing (killed?): counted {len(leftovers)} "
        "files it wrote after its last state update; rows it had not exported yet were lost with it"
    )


def _acquire_lock(directory: Path) -> int:
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise ExportError(f"{directory} is being written by another tracedb export (pid {holder})") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _load_runs(path: Path) -> list[RunRecord]:
    try:
        doc = json.loads(path.read_text())
        if doc.get("version") != STATE_VERSION:
            raise ValueError(f"version {doc.get('version')!r}, expected {STATE_VERSION}")
        return [RunRecord.from_json(r) for r in doc["runs"]]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ExportError(f"{path}: unreadable export state ({e}); move it away to start a new history") from None


def _write_atomically(path: Path, data: bytes) -> None:
    temp = path.with_name(path.name + ".tmp")
    temp.write_bytes(data)
    _fsync(temp)
    os.replace(temp, path)
    _fsync(path.parent)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _iso(time_us: int) -> str:
    return dt.datetime.fromtimestamp(time_us / 1e6, dt.UTC).isoformat(sep=" ", timespec="seconds")


def _iso_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
