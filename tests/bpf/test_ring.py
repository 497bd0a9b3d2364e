"""Reading BPF ring buffers through their memory map, against a small program
of the test's own: every getppid() of a chosen process submits one record of a
length that varies with its sequence number (some discarded instead) into a
one-page ring, which wraps around every few dozen records."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tracedb.connectors.bpf import CFLAGS, BpfProgram

RING_BYTES = 4096  # one page: the smallest ring the kernel makes
DISCARD_EVERY = 5  # every fifth record is reserved, then discarded
MAX_RECORD = 72

PROGRAM = b"""
struct record { u8 bytes[MAX_RECORD]; };

BPF_RINGBUF_OUTPUT(ring, 1);
BPF_ARRAY(target_tgid, u32, 1);
BPF_ARRAY(next_seq, u32, 1);
BPF_ARRAY(lost, u64, 2);  /* records the ring had no room for: submitted, discarded */
BPF_ARRAY(slowly, u32, 1);  /* 1: fill full-size records slowly, after reserving them */
BPF_PERCPU_ARRAY(scratch, struct record, 1);

TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {
    int zero = 0;
    u32 *tgid = target_tgid.lookup(&zero);
    if (!tgid || *tgid != bpf_get_current_pid_tgid() >> 32)
        return 0;
    u32 *next = next_seq.lookup(&zero);
    struct record *record = scratch.lookup(&zero);
    if (!next || !record)
        return 0;
    u32 seq = (*next)++;
    if (seq % DISCARD_EVERY == DISCARD_EVERY - 1) {
        struct record *reserved = ring.ringbuf_reserve(sizeof(*reserved));
        if (!reserved) {
            lost.increment(1);
            return 0;
        }
        *(u32 *)reserved->bytes = seq;
        ring.ringbuf_discard(reserved, BPF_RB_NO_WAKEUP);
        return 0;
    }
    u32 *slow = slowly.lookup(&zero);
    if (slow && *slow) {
        struct record *reserved = ring.ringbuf_reserve(sizeof(*reserved));
        if (!reserved) {
            lost.increment(0);
            return 0;
        }
        *(u32 *)reserved->bytes = seq;
        for (int i = 4; i < MAX_RECORD; i++) {
            for (int spin = 0; spin < 16; spin++)
                bpf_ktime_get_ns();
            reserved->bytes[i] = seq + i;
        }
        ring.ringbuf_submit(reserved, BPF_RB_NO_WAKEUP);
        return 0;
    }
    *(u32 *)record->bytes = seq;
    for (int i = 4; i < MAX_RECORD; i++)
        record->bytes[i] = seq + i;
    u32 length = 4 + ((seq * 7) & 63);  /* every remainder mod 8 */
    if (ring.ringbuf_output(record, length, BPF_RB_NO_WAKEUP))
        lost.increment(0);
    return 0;
}
"""

# Paced, so that a reader kept off its CPU for a few ms does not fill the ring at once.
WRITER = """
import os, sys, time
sys.stdin.readline()
for _ in range(int(sys.argv[1])):
    os.getppid()
    pause_end = time.perf_counter() + 50e-6
    while time.perf_counter() < pause_end:
        pass
"""


def record(seq: int, length: int | None = None) -> bytes:
    """What the program submits for `seq` (of `length` bytes when slow)."""
    length = 4 + (seq * 7 & 63) if length is None else length
    return seq.to_bytes(4, "little") + bytes((seq + i) & 0xFF for i in range(4, length))


def submitted(seqs) -> list[bytes]:
    return [record(seq) for seq in seqs if not discarded(seq)]


def discarded(seq: int) -> bool:
    return seq % DISCARD_EVERY == DISCARD_EVERY - 1


def footprint(seqs) -> int:
    """Bytes the records of `seqs` take in the ring: 8-byte header, 8-byte aligned."""
    return sum((MAX_RECORD if discarded(seq) else len(record(seq))) + 15 & ~7 for seq in seqs)


@pytest.fixture
def program(bpf_ready):
    """The test program, read through BpfProgram, tracing no process yet."""
    from bcc import BPF

    program = BpfProgram("ring_test", {})
    defines = [f"-DMAX_RECORD={MAX_RECORD}", f"-DDISCARD_EVERY={DISCARD_EVERY}"]
    program.bpf = BPF(text=PROGRAM, cflags=[*CFLAGS, *defines])
    yield program
    program.close()


def set_value(program: BpfProgram, array: str, value: int) -> None:
    table = program.bpf[array.encode()]
    table[0] = table.Leaf(value)


def trace(program: BpfProgram, pid: int) -> None:
    set_value(program, "target_tgid", pid)


def counts(program: BpfProgram) -> tuple[int, int]:
    """(records the program made, records the full ring lost)."""
    return program.array_sum("next_seq"), program.array_values("lost")[0]


def test_every_event_arrives_once_in_order_across_wrap_arounds(program):
    ring = program.open_ring("ring", None)
    trace(program, os.getpid())
    burst, bursts = 40, 60
    for _ in range(bursts):
        for _ in range(burst):
            os.getppid()
        program.drain()
    expected = submitted(range(burst * bursts))
    assert counts(program) == (burst * bursts, 0)
    assert max(footprint(range(start, start + burst)) for start in range(0, burst * bursts, burst)) < RING_BYTES
    assert footprint(range(burst * bursts)) > 20 * RING_BYTES  # many wrap-arounds
    assert (len(ring), ring.added, ring.dropped) == (len(expected), len(expected), 0)
    assert ring.held_bytes == sum(map(len, expected))
    assert ring.take_raw() == expected
    assert (ring.taken, ring.held_bytes) == (len(expected), 0)


def test_a_discarded_record_is_skipped_even_when_last(program):
    ring = program.open_ring("ring", None)
    trace(program, os.getpid())
    for _ in range(DISCARD_EVERY):
        os.getppid()
    program.drain()
    assert ring.take_raw() == submitted(range(DISCARD_EVERY))
    os.getppid()
    program.drain()
    assert ring.take_raw() == [record(DISCARD_EVERY)]


def test_events_past_the_byte_limit_are_dropped_whole_and_still_consumed(program):
    limit, calls = 300, 45
    assert footprint(range(calls)) < RING_BYTES < footprint(range(2 * calls))
    ring = program.open_ring("ring", None, limit_bytes=limit)
    trace(program, os.getpid())
    for _ in range(calls):
        os.getppid()
    program.drain()
    kept, held = [], 0
    for event in submitted(range(calls)):
        if held + len(event) <= limit:
            kept.append(event)
            held += len(event)
    assert 0 < len(kept) < len(submitted(range(calls)))
    assert (len(ring), ring.held_bytes, ring.dropped) == (len(kept), held, len(submitted(range(calls))) - len(kept))
    assert ring.take_raw() == kept
    for _ in range(calls):  # room for these only if the dropped events left the kernel's ring
        os.getppid()
    program.drain()
    assert counts(program) == (2 * calls, 0)
    assert ring.added + ring.dropped == len(submitted(range(2 * calls)))


def test_records_still_being_written_wait_for_the_next_drain(program):
    """A child process on another CPU fills each record slowly after reserving
    it while the test drains as fast as it can: records caught half-written are
    left for the next drain; all arrive whole and in order, but for those the
    full ring lost in the kernel (counted)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs: one writing while the other reads")
    ring = program.open_ring("ring", None)
    set_value(program, "slowly", 1)
    child = subprocess.Popen([sys.executable, "-c", WRITER, "5000"], stdin=subprocess.PIPE, text=True)
    try:
        os.sched_setaffinity(child.pid, {cpus[1]})
        os.sched_setaffinity(0, {cpus[0]})
        trace(program, child.pid)
        child.stdin.write("go\n")
        child.stdin.close()
        deadline = time.monotonic() + 60
        while child.poll() is None and time.monotonic() < deadline:
            program.drain()
        assert child.poll() == 0, "the child did not finish in time"
    finally:
        os.sched_setaffinity(0, cpus)
        child.kill()
        child.wait()
    program.drain()
    events = ring.take_raw()
    made, lost = counts(program)
    seqs = [int.from_bytes(event[:4], "little") for event in events]
    assert seqs == sorted(set(seqs))
    assert events == [record(seq, MAX_RECORD) for seq in seqs]
    assert len(events) + lost == sum(not discarded(seq) for seq in range(made))
    assert len(events) > 0
