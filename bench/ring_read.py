"""Reading a BPF ring buffer: BCC's per-event ctypes callback (how tracedb read
rings before) against tracedb's reader of the mapped ring (`BpfProgram.drain`).

A tracepoint on getppid() submits one record of --bytes bytes per call of this
process into a ring of --ring-mib MiB. Events are made in bursts that fit the
ring, then drained; only the drains are timed. Both ways read the same program
and hold the events in a RawRing, taken (untimed) after each drain as a
connector would, so the difference is the reading alone. The ways take turns,
so that a busy machine slows both alike; the best run is the cost without
interference. Needs root. Figures are printed, never asserted:

    .venv/bin/python bench/ring_read.py
    .venv/bin/python bench/ring_read.py --events 200000 --bytes 64 1024 --repeat 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from tracedb.connectors.bpf import CFLAGS, BpfProgram, RawRing

PROGRAM = b"""
struct record { u8 bytes[RECORD_BYTES]; };

BPF_RINGBUF_OUTPUT(ring, RING_PAGES);
BPF_ARRAY(lost, u64, 1);
BPF_PERCPU_ARRAY(scratch, struct record, 1);

TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {
    if (bpf_get_current_pid_tgid() >> 32 != SELF_TGID)
        return 0;
    int zero = 0;
    struct record *record = scratch.lookup(&zero);
    if (record && ring.ringbuf_output(record, sizeof(*record), BPF_RB_NO_WAKEUP))
        lost.increment(0);
    return 0;
}
"""


def load(record_bytes: int, ring_mib: int) -> BpfProgram:
    from bcc import BPF

    defines = {"RECORD_BYTES": record_bytes, "RING_PAGES": (ring_mib << 20) // os.sysconf("SC_PAGE_SIZE"),
               "SELF_TGID": os.getpid()}
    program = BpfProgram("ring_read_bench", {})
    program.bpf = BPF(text=PROGRAM, cflags=[*CFLAGS, *(f"-D{name}={value}" for name, value in defines.items())])
    return program


def timed_drains(drain, ring: RawRing, events: int, burst: int) -> float:
    """Seconds spent in drain() while `events` events are made, `burst` at a time."""
    spent = 0.0
    for start in range(0, events, burst):
        for _ in range(min(burst, events - start)):
            os.getppid()
        t0 = time.perf_counter()
        drain()
        spent += time.perf_counter() - t0
        ring.take_raw()
    assert ring.taken == events, (ring.taken, events)
    return spent


def callback_way(program: BpfProgram, events: int, burst: int) -> float:
    """BCC's open_ring_buffer + ring_buffer_consume, a ctypes.string_at copy per event."""
    ring = RawRing(None)
    program.bpf[b"ring"].open_ring_buffer(ring.callback)
    return timed_drains(program.bpf.ring_buffer_consume, ring, events, burst)


def mapped_way(program: BpfProgram, events: int, burst: int) -> float:
    """tracedb's reader of the mapped ring."""
    ring = program.open_ring("ring", None)
    return timed_drains(program.drain, ring, events, burst)


WAYS = {"callback": callback_way, "mapped": mapped_way}


def run(way, record_bytes: int, ring_mib: int, events: int) -> float:
    """Seconds per event drained, on a fresh program (each way reads its ring alone)."""
    program = load(record_bytes, ring_mib)
    try:
        burst = min(10_000, (ring_mib << 20) // (record_bytes + 8) // 2)
        spent = way(program, events, burst)
        assert program.array_sum("lost") == 0, "the ring overflowed"
        return spent / events
    finally:
        program.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="events per run")
    parser.add_argument("--bytes", type=int, nargs="+", default=[64, 256, 1024], help="record sizes to try")
    parser.add_argument("--ring-mib", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=5, help="runs per way, the ways taking turns")
    args = parser.parse_args()
    print(f"{'bytes':>6} {'way':>9} {'best µs/ev':>11} {'median':>7} {'events/s (best)':>16}   runs (µs/event)")
    for record_bytes in args.bytes:
        runs: dict[str, list[float]] = {name: [] for name in WAYS}
        for _ in range(args.repeat):
            for name, way in WAYS.items():
                runs[name].append(run(way, record_bytes, args.ring_mib, args.events))
        for name, per_event in runs.items():
            best = min(per_event)
            print(f"{record_bytes:>6} {name:>9} {best * 1e6:>11.3f} {statistics.median(per_event) * 1e6:>7.3f} "
                  f"{1 / best:>16,.0f}   " + " ".join(f"{run * 1e6:.3f}" for run in per_event))


if __name__ == "__main__":
    main()
