"""proc_events: exec_events and proc_exit_events from sched tracepoints.

The kernel side is bpf/proc_events/. Fields of task_struct that the tracepoints
do not carry (start time, exit code, parent) are read at byte offsets taken
from the running kernel's BTF, passed to the C as defines.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from tracedb.clock import NS_PER_TICK, BootClock, upids
from tracedb.connectors.base import Connector, Unavailable
from tracedb.connectors.bpf import BpfProgram
from tracedb.connectors.registry import register
from tracedb.kernel import btf
from tracedb.kernel.tracefs import TRACEFS
from tracedb.schema import get_schema

# Mirrors of the structs in bpf/proc_events/proc_events.h (checked by a test).
EXEC_EVENT = np.dtype(
    [
        ("time_ns", "<u8"),
        ("start_boottime_ns", "<u8"),
        ("pid", "<u4"),
        ("ppid", "<u4"),
        ("uid", "<u4"),
        ("filename_len", "<u4"),
        ("comm", "S16"),
        ("filename", "S256"),
    ]
)
EXIT_EVENT = np.dtype(
    [
        ("time_ns", "<u8"),
        ("start_boottime_ns", "<u8"),
        ("pid", "<u4"),
        ("ppid", "<u4"),
        ("exit_code", "<i4"),
        ("_pad", "<u4"),
        ("comm", "S16"),
    ]
)

# The header both sides include, and its structs' Python mirrors, for the layout test.
BPF_HEADER = "proc_events/proc_events.h"
BPF_STRUCTS = {"exec_event": EXEC_EVENT, "exit_event": EXIT_EVENT}

TASK_FIELDS = {
    "TASK_START_BOOTTIME_OFF": ("task_struct", "start_boottime"),
    "TASK_EXIT_CODE_OFF": ("task_struct", "exit_code"),
    "TASK_REAL_PARENT_OFF": ("task_struct", "real_parent"),
    "TASK_TGID_OFF": ("task_struct", "tgid"),
    "TASK_GROUP_LEADER_OFF": ("task_struct", "group_leader"),
}
RINGBUF_PAGES = 64  # 256 KiB each: seconds of fork storms at 100 ms drains
EXIT_FORMAT = Path(TRACEFS) / "events/sched/sched_process_exit/format"


def _texts(raw: np.ndarray) -> pa.Array:
    """NUL-terminated C strings to an Arrow string array (bad UTF-8 replaced)."""
    return pa.array([s.decode("utf-8", "replace") for s in raw], pa.string())


def _common_columns(events: np.ndarray, clock: BootClock) -> dict[str, pa.Array]:
    ticks = events["start_boottime_ns"] // NS_PER_TICK
    return {
        "time_": pa.array(clock.boot_ns_to_epoch_us(events["time_ns"])),
        "upid": upids(events["pid"], ticks),
        "pid": pa.array(events["pid"].astype(np.int32)),
        "ppid": pa.array(events["ppid"].astype(np.int32)),
    }


def decode_exec(events: np.ndarray, clock: BootClock) -> pa.RecordBatch:
    columns = _common_columns(events, clock)
    columns["uid"] = pa.array(events["uid"].astype(np.int32))
    columns["filename"] = _texts(events["filename"])
    columns["comm"] = _texts(events["comm"])
    return _batch("exec_events", columns)


def decode_exit(events: np.ndarray, clock: BootClock) -> pa.RecordBatch:
    columns = _common_columns(events, clock)
    code = events["exit_code"]
    columns["exit_code"] = pa.array(((code >> 8) & 0xFF).astype(np.int32))
    columns["signal"] = pa.array((code & 0x7F).astype(np.int32))
    columns["core_dumped"] = pa.array((code & 0x80) != 0)
    columns["comm"] = _texts(events["comm"])
    columns["lifetime_ns"] = pa.array((events["time_ns"] - events["start_boottime_ns"]).astype(np.int64))
    return _batch("proc_exit_events", columns)


def _batch(table: str, columns: dict[str, pa.Array]) -> pa.RecordBatch:
    schema = get_schema(table).arrow_schema
    return pa.RecordBatch.from_arrays([columns[f.name].cast(f.type) for f in schema], schema=schema)


@register
class ProcEvents(Connector):
    name = "proc_events"
    tables = ("exec_events", "proc_exit_events")
    description = "Process exec and exit, from sched:sched_process_exec/exit (BPF)."
    sampling_period_s = 0.1
    push_period_s = 1.0
    needs_bpf = True

    def __init__(self) -> None:
        super().__init__()
        self.clock = BootClock.now()
        self.program: BpfProgram | None = None

    def defines(self) -> dict[str, int | None]:
        try:
            found = btf.offsets(list(TASK_FIELDS.values()))
        except btf.BtfError as e:
            raise Unavailable(f"cannot read task_struct offsets from BTF: {e}") from None
        defines: dict[str, int | None] = {d: found[".".join(f)] for d, f in TASK_FIELDS.items()}
        defines["RINGBUF_PAGES"] = RINGBUF_PAGES
        if EXIT_FORMAT.exists() and "group_dead" in EXIT_FORMAT.read_text():
            defines["HAVE_GROUP_DEAD"] = None
        return defines

    def start(self) -> None:
        self.program = BpfProgram("proc_events", self.defines())
        self.program.load()
        self.exec_ring = self.program.open_ring("exec_ring", EXEC_EVENT)
        self.exit_ring = self.program.open_ring("exit_ring", EXIT_EVENT)

    def sample(self) -> None:
        self.program.drain()

    def flush(self) -> dict[str, pa.RecordBatch]:
        self.program.drain()
        execs, exits = self.exec_ring.take(), self.exit_ring.take()
        self.stats.events += len(execs) + len(exits)
        self.stats.events_lost = self.program.array_sum("lost")
        return {
            "exec_events": decode_exec(execs, self.clock),
            "proc_exit_events": decode_exit(exits, self.clock),
        }

    def stop(self) -> None:
        if self.program is not None:
            self.program.close()
            self.program = None
