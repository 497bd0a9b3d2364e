import pytest

from tracedb.clock import NS_PER_TICK
from tracedb.connectors.procfs_parse import (
    PAGE_SIZE,
    ProcParseError,
    parse_cgroup,
    parse_cmdline,
    parse_io,
    parse_stat,
    parse_status_uid,
)

# A /proc/PID/stat line of a process whose comm holds a space and parentheses.
STAT = (
    "4242 (my (odd) cmd) S 17 4242 4242 0 -1 4194560 1500 0 7 0 250 31 0 0 20 0 "
    "3 0 987654 123456789 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
)


def test_stat_fields_and_units():
    s = parse_stat(STAT)
    assert (s.pid, s.comm, s.ppid) == (4242, "my (odd) cmd", 17)
    assert (s.minor_faults, s.major_faults) == (1500, 7)
    assert s.cpu_utime_ns == 250 * NS_PER_TICK and s.cpu_ktime_ns == 31 * NS_PER_TICK
    assert (s.num_threads, s.start_ticks, s.vsize_bytes) == (3, 987654, 123456789)
    assert s.rss_bytes == 2048 * PAGE_SIZE


@pytest.mark.parametrize("bad", ["", "4242 no parens S 1 2", "4242 (x) S 1 2 3"])
def test_malformed_stat_is_a_parse_error(bad):
    with pytest.raises(ProcParseError):
        parse_stat(bad)


def test_own_stat_parses():
    with open("/proc/self/stat") as f:
        s = parse_stat(f.read())
    import os

    assert s.pid == os.getpid() and s.num_threads >= 1


def test_io_counters():
    text = "rchar: 10\nwchar: 20\nsyscr: 1\nsyscw: 2\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n"
    io = parse_io(text)
    assert (io.rchar_bytes, io.wchar_bytes, io.read_bytes, io.write_bytes) == (10, 20, 4096, 8192)
    with pytest.raises(ProcParseError):
        parse_io("rchar: 10\n")


def test_status_uid_cmdline_cgroup():
    assert parse_status_uid("Name:\tx\nUid:\t1000\t1000\t1000\t1000\nGid:\t5\n") == 1000
    with pytest.raises(ProcParseError):
        parse_status_uid("Name: x\n")
    assert parse_cmdline(b"python3\0-c\0print(1)\0") == "python3 -c print(1)"
    assert parse_cmdline(b"") == ""
    assert parse_cgroup("0::/system.slice/nginx.service\n") == "/system.slice/nginx.service"
    assert parse_cgroup("12:cpu,cpuacct:/user\n") == "/user"
