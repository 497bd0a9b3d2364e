"""Parsers for the /proc files the procfs connector reads.

Pure functions over file contents, so tests feed them captured text. Field
numbers follow proc(5).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from tracedb.clock import NS_PER_TICK

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


class ProcParseError(ValueError):
    """A /proc file did not have the expected shape."""


@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/PID/stat tracedb uses."""

    pid: int
    comm: str
    ppid: int
    minor_faults: int
    major_faults: int
    cpu_utime_ns: int
    cpu_ktime_ns: int
    num_threads: int
    start_ticks: int
    vsize_bytes: int
    rss_bytes: int


def parse_stat(text: str) -> ProcStat:
    # comm is in parentheses and may itself hold spaces and parentheses:
    # it ends at the last ')'.
    open_paren, close_paren = text.find("("), text.rfind(")")
    if open_paren < 0 or close_paren < open_paren:
        raise ProcParseError(f"no (comm) in stat line {text[:80]!r}")
    fields = text[close_paren + 2 :].split()
    if len(fields) < 22:
        raise ProcParseError(f"stat line has {len(fields) + 2} fields, expected at least 24")

    def number(n: int) -> int:  # field n of proc(5), which counts pid as 1 and comm as 2
        return int(fields[n - 3])

    return ProcStat(
        pid=int(text[:open_paren]),
        comm=text[open_paren + 1 : close_paren],
        ppid=number(4),
        minor_faults=number(10),
        major_faults=number(12),
        cpu_utime_ns=number(14) * NS_PER_TICK,
        cpu_ktime_ns=number(15) * NS_PER_TICK,
        num_threads=number(20),
        start_ticks=number(22),
        vsize_bytes=number(23),
        rss_bytes=number(24) * PAGE_SIZE,
    )


@dataclass(frozen=True)
class ProcIo:
    rchar_bytes: int = 0
    wchar_bytes: int = 0
    read_bytes: int = 0
    write_bytes: int = 0


def parse_io(text: str) -> ProcIo:
    values = dict(_key_values(text))
    try:
        return ProcIo(
            rchar_bytes=int(values["rchar"]),
            wchar_bytes=int(values["wchar"]),
            read_bytes=int(values["read_bytes"]),
            write_bytes=int(values["write_bytes"]),
        )
    except (KeyError, ValueError) as e:
        raise ProcParseError(f"io file lacks a counter: {e}") from None


def parse_status_uid(text: str) -> int:
    """Real uid from /proc/PID/status ("Uid: real effective saved fs")."""
    for key, value in _key_values(text):
        if key == "Uid":
            return int(value.split()[0])
    raise ProcParseError("status has no Uid line")


def parse_cmdline(raw: bytes) -> str:
    return raw.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")


def parse_cgroup(text: str) -> str:
    """The cgroup v2 path ("0::/path"); the first hierarchy's path on v1-only hosts."""
    paths = [line.split(":", 2) for line in text.splitlines() if line.count(":") >= 2]
    for hierarchy, _controllers, path in paths:
        if hierarchy == "0":
            return path
    return paths[0][2] if paths else ""


def _key_values(text: str):
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            yield key.strip(), value.strip()
