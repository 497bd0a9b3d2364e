"""Which BPF probe kinds work on this machine, found out by trying each one.

Every kind gets its own tiny BCC program (a tiny compile costs about half a
second, and a separate program means one kind's failure, at compile, map
creation or attach, cannot hide or fake another's result). Each program is
attached, made to fire by this process itself, checked, and cleaned up whatever
happened. Needs root (or CAP_BPF+CAP_PERFMON), tracefs and kernel headers.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from bcc import BPF, PerfSWConfig, PerfType

from tracedb.kernel import tracefs

CFLAGS = ["-Wno-ignored-attributes"]
SAMPLE_HZ = 99
BUSY_SECONDS = 0.3
RING_POLL_MS = 500
# BCC 0.26 wants bytes for names and program text (str works but warns DeprecationWarning).
_HANDLER = b"on_event"

# Counts events of this process only, so that what fired is known to be our trigger.
_COUNTING_PROGRAM = r"""
BPF_ARRAY(hits, u64, 1);

int on_event(void *ctx) {
    if (bpf_get_current_pid_tgid() >> 32 == TARGET_TGID)
        hits.atomic_increment(0);
    return 0;
}
"""

_RING_BUFFER_PROGRAM = r"""
BPF_RINGBUF_OUTPUT(events, 1);

int on_event(void *ctx) {
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (tgid == TARGET_TGID)
        events.ringbuf_output(&tgid, sizeof(tgid), 0);
    return 0;
}
"""


@dataclass(frozen=True)
class ProbeResult:
    """Whether one probe kind attached and fired; detail says what was tried or what failed."""

    name: str
    ok: bool
    detail: str


class _NotFired(Exception):
    """The probe attached but the trigger produced no event."""


def _expect_hits(bpf: BPF, trigger: Callable[[], object], what: str) -> str:
    trigger()
    count = bpf[b"hits"][0].value
    if count == 0:
        raise _NotFired(f"{what} attached but did not fire")
    return f"{what}: {count} hit(s)"


def _busy_loop() -> None:
    deadline = time.monotonic() + BUSY_SECONDS
    while time.monotonic() < deadline:
        pass


def _call_libc_getpid() -> None:
    # Through the libc symbol, which is what the uprobe is on (os.getpid may not be).
    ctypes.CDLL(ctypes.util.find_library("c")).getpid()


def _kprobe_support_hint() -> str:
    has_pmu = os.path.exists("/sys/bus/event_source/devices/kprobe")
    has_events_file = os.path.exists(os.path.join(tracefs.TRACEFS, "kprobe_events"))
    if has_pmu or has_events_file:
        return ""
    return "(no kprobe PMU nor kprobe_events: CONFIG_KPROBES unset?) "


def _exercise_kprobe(bpf: BPF) -> str:
    function = bpf.get_syscall_fnname(b"getppid")
    try:
        bpf.attach_kprobe(event=function, fn_name=_HANDLER)
    except Exception as error:
        raise RuntimeError(f"{_kprobe_support_hint()}{error}") from error
    return _expect_hits(bpf, os.getppid, f"kprobe on {function.decode()}")


def _exercise_syscall_tracepoint(bpf: BPF) -> str:
    bpf.attach_tracepoint(tp=b"syscalls:sys_enter_getppid", fn_name=_HANDLER)
    return _expect_hits(bpf, os.getppid, "syscalls:sys_enter_getppid")


def _exercise_tracepoint(bpf: BPF) -> str:
    bpf.attach_tracepoint(tp=b"sched:sched_process_fork", fn_name=_HANDLER)
    return _expect_hits(bpf, lambda: subprocess.run(["/bin/true"], check=True),
                        "sched:sched_process_fork")


def _exercise_uprobe(bpf: BPF) -> str:
    bpf.attach_uprobe(name=b"c", sym=b"getpid", fn_name=_HANDLER)
    return _expect_hits(bpf, _call_libc_getpid, "uprobe on libc getpid")


def _exercise_perf_event(bpf: BPF) -> str:
    bpf.attach_perf_event(ev_type=PerfType.SOFTWARE, ev_config=PerfSWConfig.CPU_CLOCK,
                          fn_name=_HANDLER, sample_freq=SAMPLE_HZ)
    return _expect_hits(bpf, _busy_loop, f"CPU_CLOCK at {SAMPLE_HZ} Hz over {BUSY_SECONDS} s")


def _exercise_ring_buffer(bpf: BPF) -> str:
    received: list[int] = []
    bpf[b"events"].open_ring_buffer(lambda _cpu, _data, size: received.append(size))
    # Any trigger would do; the syscall tracepoint is the one the project relies on.
    bpf.attach_tracepoint(tp=b"syscalls:sys_enter_getppid", fn_name=_HANDLER)
    os.getppid()
    bpf.ring_buffer_poll(timeout=RING_POLL_MS)
    if not received:
        raise _NotFired(f"no event within {RING_POLL_MS} ms (trigger: syscalls:sys_enter_getppid)")
    return f"{len(received)} event(s) of {received[0]} bytes"


_TRIALS: tuple[tuple[str, str, Callable[[BPF], str]], ...] = (
    ("kprobe", _COUNTING_PROGRAM, _exercise_kprobe),
    ("syscall tracepoint", _COUNTING_PROGRAM, _exercise_syscall_tracepoint),
    ("tracepoint", _COUNTING_PROGRAM, _exercise_tracepoint),
    ("uprobe", _COUNTING_PROGRAM, _exercise_uprobe),
    ("perf_event", _COUNTING_PROGRAM, _exercise_perf_event),
    ("ring buffer", _RING_BUFFER_PROGRAM, _exercise_ring_buffer),
)
PROBE_KINDS = tuple(name for name, _, _ in _TRIALS)


@contextlib.contextmanager
def _stderr_captured() -> Iterator[Callable[[], str]]:
    """Send file descriptor 2 to a temporary file for the duration; yields a reader.

    libbcc explains failures (clang errors, which tracefs file it could not open)
    on fd 2 from C, not in the Python exception; capturing them puts the reason
    into the result and keeps the doctor's table readable."""
    sys.stderr.flush()
    saved_fd = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)

        def read_captured() -> str:
            sys.stderr.flush()
            capture.seek(0)
            return capture.read().decode(errors="replace")

        try:
            yield read_captured
        finally:
            os.dup2(saved_fd, 2)
            os.close(saved_fd)


def _explain(error: Exception, captured: str) -> str:
    """The exception, plus libbcc's most telling line: a compiler error if any, else its last."""
    lines = [line.strip() for line in captured.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    telling = (errors or lines or [""])[0 if errors else -1]
    return f"{error}; {telling}" if telling and telling not in str(error) else str(error)


def _try(name: str, program: str, exercise: Callable[[BPF], str]) -> ProbeResult:
    cflags = [*CFLAGS, f"-DTARGET_TGID={os.getpid()}"]
    with _stderr_captured() as read_captured:
        bpf = None
        try:
            bpf = BPF(text=program.encode(), cflags=cflags)
            return ProbeResult(name, True, exercise(bpf))
        except Exception as error:  # compile, load and attach failures all come as Exception
            return ProbeResult(name, False, _explain(error, read_captured()))
        finally:
            if bpf is not None:
                bpf.cleanup()


def probe_all() -> list[ProbeResult]:
    """Try every probe kind in PROBE_KINDS, one at a time (a few seconds in all)."""
    return [_try(name, program, exercise) for name, program, exercise in _TRIALS]
