"""tracefs (and debugfs): whether they are mounted, and mounting them.

BCC reads tracepoint formats and registers probes through tracefs; some
machines boot without it mounted. debugfs is mounted too because older BCC
and tools look for tracefs under /sys/kernel/debug/tracing.
"""

from __future__ import annotations

import subprocess

TRACEFS = "/sys/kernel/tracing"
DEBUGFS = "/sys/kernel/debug"


def _mounted(fs_type: str, mount_point: str) -> bool:
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            _, point, mounted_type, *_ = line.split()
            if point == mount_point and mounted_type == fs_type:
                return True
    return False


def is_mounted() -> bool:
    """True when tracefs is mounted at TRACEFS."""
    return _mounted("tracefs", TRACEFS)


def _mount_once(fs_type: str, mount_point: str) -> None:
    if _mounted(fs_type, mount_point):
        return
    command = ["mount", "-t", fs_type, fs_type, mount_point]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise OSError(f"{' '.join(command)} failed: {result.stderr.strip()}")


def mount() -> None:
    """Mount tracefs at TRACEFS and debugfs at DEBUGFS unless already there (needs root)."""
    _mount_once("tracefs", TRACEFS)
    _mount_once("debugfs", DEBUGFS)
