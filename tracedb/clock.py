"""Clocks and process identity shared by all connectors.

BPF programs stamp events with CLOCK_BOOTTIME (bpf_ktime_get_boot_ns), /proc
gives process start times in clock ticks since boot; tables want wall-clock
time. `BootClock` holds the offset between the two, read once at start.

A process is identified by its `upid`: pid plus start time in clock ticks
since boot ("1234:98765"), the same from /proc (field 22 of /proc/PID/stat)
and from BPF (task->start_boottime divided by the tick length), so rows of
different connectors join on it even after the pid is reused.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
NS_PER_TICK = 1_000_000_000 // CLOCK_TICKS_PER_S


@dataclass(frozen=True)
class BootClock:
    """Converts CLOCK_BOOTTIME nanoseconds to wall-clock microseconds."""

    boot_epoch_ns: int  # wall-clock time at which CLOCK_BOOTTIME was zero

    @classmethod
    def now(cls) -> BootClock:
        return cls(time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME))

    def boot_ns_to_epoch_us(self, boot_ns: np.ndarray) -> np.ndarray:
        return (np.asarray(boot_ns, dtype=np.int64) + self.boot_epoch_ns) // 1000

    def ticks_to_epoch_us(self, ticks: int) -> int:
        return (ticks * NS_PER_TICK + self.boot_epoch_ns) // 1000


def upid(pid: int, start_ticks: int) -> str:
    return f"{pid}:{start_ticks}"


def upids(pids: np.ndarray, start_ticks: np.ndarray) -> pa.Array:
    """Vectorised `upid` for a batch of events."""
    return pc.binary_join_element_wise(
        pa.array(pids).cast(pa.string()), pa.array(start_ticks).cast(pa.string()), ":"
    )
