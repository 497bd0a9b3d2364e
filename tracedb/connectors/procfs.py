"""procfs: process_stats and processes, from a scan of /proc.

Every sampling period the connector reads /proc/PID/stat and /proc/PID/io of
every process into a process_stats row. A process seen for the first time, or
seen running another program than last time (its comm changed after an exec),
also gets a processes row with its metadata.

Processes that end between two reads of their files are skipped silently: that
race is normal, not an error. Unexpected file contents count as decode errors.
"""

from __future__ import annotations

import os
import pwd
import time
from functools import cache
from pathlib import Path

import pyarrow as pa

from tracedb.clock import BootClock, upid
from tracedb.connectors.base import Connector
from tracedb.connectors.procfs_parse import (
    ProcIo,
    ProcParseError,
    ProcStat,
    parse_cgroup,
    parse_cmdline,
    parse_io,
    parse_stat,
    parse_status_uid,
)
from tracedb.connectors.registry import register
from tracedb.schema import get_schema

PROC = Path("/proc")
STAT_COLUMNS = ("comm", "major_faults", "minor_faults", "cpu_utime_ns", "cpu_ktime_ns", "num_threads", "vsize_bytes", "rss_bytes")
IO_COLUMNS = ("rchar_bytes", "wchar_bytes", "read_bytes", "write_bytes")


def _read_text(path: Path) -> str:
    return path.read_text(errors="replace")


@cache
def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


class _Rows:
    """Column lists of one table, filled row by row between flushes."""

    def __init__(self, table: str):
        self.schema = get_schema(table).arrow_schema
        self.columns: dict[str, list] = {name: [] for name in self.schema.names}

    def add(self, row: dict) -> None:
        for name, values in self.columns.items():
            values.append(row[name])

    def take(self) -> pa.RecordBatch:
        batch = pa.RecordBatch.from_pydict(self.columns, schema=self.schema)
        self.columns = {name: [] for name in self.schema.names}
        return batch


@register
class Procfs(Connector):
    name = "procfs"
    tables = ("process_stats", "processes")
    description = "Per-process CPU, memory and I/O counters and process metadata, from /proc."
    sampling_period_s = 1.0
    push_period_s = 1.0

    def __init__(self, proc: Path = PROC) -> None:
        super().__init__()
        self.proc = proc
        self.clock = BootClock.now()
        self.stats_rows = _Rows("process_stats")
        self.process_rows = _Rows("processes")
        self.comm_by_upid: dict[str, str] = {}

    def sample(self) -> None:
        now_us = time.time_ns() // 1000
        alive: dict[str, str] = {}
        for entry in os.scandir(self.proc):
            if entry.name.isdigit():
                self._sample_process(Path(entry.path), now_us, alive)
        self.comm_by_upid = alive

    def _sample_process(self, pid_dir: Path, now_us: int, alive: dict[str, str]) -> None:
        try:
            stat = parse_stat(_read_text(pid_dir / "stat"))
            io = self._read_io(pid_dir)
            process = upid(stat.pid, stat.start_ticks)
            if self.comm_by_upid.get(process) != stat.comm:
                self.process_rows.add(self._process_row(pid_dir, stat, process, now_us))
        except (FileNotFoundError, ProcessLookupError):
            return  # it ended while we read it
        except (ProcParseError, ValueError, OSError):
            self.stats.decode_errors += 1
            return
        alive[process] = stat.comm
        self.stats.events += 1
        row = {"time_": now_us, "upid": process, "pid": stat.pid}
        row.update({c: getattr(stat, c) for c in STAT_COLUMNS})
        row.update({c: getattr(io, c) for c in IO_COLUMNS})
        self.stats_rows.add(row)

    @staticmethod
    def _read_io(pid_dir: Path) -> ProcIo:
        try:
            return parse_io(_read_text(pid_dir / "io"))
        except PermissionError:
            return ProcIo()  # io is private to the owner; without root the counters read 0

    def _process_row(self, pid_dir: Path, stat: ProcStat, process: str, now_us: int) -> dict:
        uid = parse_status_uid(_read_text(pid_dir / "status"))
        try:
            exe = os.readlink(pid_dir / "exe")
        except OSError:
            exe = ""  # kernel threads have none; others' exe needs root
        return {
            "time_": now_us,
            "upid": process,
            "pid": stat.pid,
            "ppid": stat.ppid,
            "start_time": self.clock.ticks_to_epoch_us(stat.start_ticks),
            "uid": uid,
            "user": user_name(uid),
            "comm": stat.comm,
            "exe": exe,
            "cmdline": parse_cmdline((pid_dir / "cmdline").read_bytes()),
            "cgroup": parse_cgroup(_read_text(pid_dir / "cgroup")),
        }

    def flush(self) -> dict[str, pa.RecordBatch]:
        return {"process_stats": self.stats_rows.take(), "processes": self.process_rows.take()}
