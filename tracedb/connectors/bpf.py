"""Loading a connector's BPF program with BCC and draining its ring buffers.

The C lives in `bpf/<connector>/` (shipped as package data `tracedb.bpf`) and is
configured only through `-D` defines, never by editing its text. Events are
submitted with BPF_RB_NO_WAKEUP, so `drain()` consumes on the connector's timer
instead of waiting for wakeups.

Rings are read through their memory map, as libbpf's consumer does, rather than
through BCC's `open_ring_buffer`, whose ctypes callback costs ~2 µs per event: a
drain reads the producer position, walks the record headers up to it in one
Python loop (stopping at the first record still being written, skipping
discarded ones), slices each event straight out of the mapping, and only then
gives the space back by storing the consumer position. That costs a quarter
to a third of the callback (bench/ring_read.py); slicing from the mapping
rather than from one copy of the whole region copies the bytes once, not twice,
and measured faster. Connectors decode the copied bytes later in numpy passes.
What a ring holds in user space may be bounded in bytes: past the bound, events
are dropped whole, and counted. A `Drainer` thread may drain a program's rings
on a timer of its own, so that a decoder starved of CPU does not let the
kernel's rings overflow.

The reads rely on x86-64's ordering (TSO): a header read as submitted is read
before its event's bytes, and the consumer position (one aligned 8-byte store)
is stored after them. A weakly ordered CPU would need an acquire barrier after
each header read and a release barrier before the store, which Python cannot
express.
"""

from __future__ import annotations

import math
import mmap
import threading
from collections import deque
from importlib import resources
from pathlib import Path

import numpy as np

from tracedb.connectors.base import Unavailable

# Harmless warnings of kernel headers older or newer than the clang BCC embeds.
CFLAGS = ["-Wno-ignored-attributes", "-Wno-duplicate-decl-specifier", "-Wno-unused-command-line-argument"]

# A ring buffer record's header (the kernel's struct bpf_ringbuf_hdr): a u32
# length whose top bits flag its state, a u32 the kernel alone uses, then the
# event; records start 8-byte aligned.
BUSY_BIT = 1 << 31  # reserved, not submitted yet
DISCARD_BIT = 1 << 30  # submitted as nothing: skip it
LENGTH_MASK = DISCARD_BIT - 1
HEADER_BYTES = 8


class RawRing:
    """Raw event bytes copied out of one BPF ring buffer, oldest first, held
    until taken. At most `limit_bytes` are held: an event that would pass the
    limit is dropped (and counted in `dropped`), which empties the kernel's
    ring all the same.

    One thread may hold while another takes, without a lock: the deque's
    append and popleft are atomic, and every counter has a single writer
    (the holder's bytes in and drops, the taker's bytes out and takes)."""

    def __init__(self, dtype: np.dtype | None, limit_bytes: float = math.inf):
        self.dtype = dtype  # None for variable-size events
        self.limit_bytes = limit_bytes
        self.taken = 0  # events taken so far
        self.dropped = 0
        self._bytes_in = 0
        self._bytes_out = 0
        self._chunks: deque[bytes] = deque()

    @property
    def held_bytes(self) -> int:
        return self._bytes_in - self._bytes_out

    def hold(self, events: list[bytes]) -> None:
        """Hold `events` (oldest first), each only if it fits under the limit."""
        size = sum(map(len, events))
        if self.held_bytes + size <= self.limit_bytes:  # the usual case, without a test per event
            self._chunks.extend(events)
            self._bytes_in += size
        else:
            for event in events:
                self._hold_one(event)

    def _hold_one(self, event: bytes) -> None:
        if self.held_bytes + len(event) > self.limit_bytes:
            self.dropped += 1
        else:
            self._chunks.append(event)
            self._bytes_in += len(event)

    def __len__(self) -> int:
        """Events held."""
        return len(self._chunks)

    def oldest(self) -> bytes | None:
        """The oldest event held, left in place (for the taking thread)."""
        return self._chunks[0] if self._chunks else None

    @property
    def added(self) -> int:
        """Events held so far, taken or not."""
        return self.taken + len(self._chunks)

    def take_raw(self, max_events: int | None = None) -> list[bytes]:
        """The oldest events held (all, or at most max_events), as their bytes."""
        count = len(self._chunks) if max_events is None else min(max_events, len(self._chunks))
        popleft = self._chunks.popleft
        chunks = [popleft() for _ in range(count)]
        self._bytes_out += sum(map(len, chunks))
        self.taken += count
        return chunks

    def take(self, max_events: int | None = None) -> np.ndarray:
        """The oldest (fixed-size) events held (all, or at most max_events), as a structured array."""
        return np.frombuffer(b"".join(self.take_raw(max_events)), dtype=self.dtype)


class MappedRingbuf:
    """A BPF_MAP_TYPE_RINGBUF map read through its memory map. The kernel lays
    it out as a consumer page (the only writable one), a producer page, then
    the data area mapped twice in a row, so that a record wrapping around the
    end is contiguous. Positions only grow; the data offset is position & mask."""

    def __init__(self, map_fd: int, data_bytes: int):
        page = mmap.PAGESIZE
        self._consumer_page = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._producer_and_data = mmap.mmap(map_fd, page + 2 * data_bytes, mmap.MAP_SHARED, mmap.PROT_READ,
                                            offset=page)
        self._consumer_pos = memoryview(self._consumer_page).cast("Q")
        self._producer_pos = memoryview(self._producer_and_data).cast("Q")
        self._words = memoryview(self._producer_and_data).cast("I")  # record headers, by offset // 4
        self._data_offset = page
        self._mask = data_bytes - 1  # the kernel makes data_bytes a power of two

    def read(self) -> list[bytes]:
        """Every event submitted since the last read, oldest first; their space goes back to the kernel."""
        consumer = self._consumer_pos[0]
        start = self._data_offset + (consumer & self._mask)
        stop, events = self._copy_submitted(start, start + self._producer_pos[0] - consumer)
        self._consumer_pos[0] = consumer + stop - start
        return events

    def _copy_submitted(self, offset: int, end: int) -> tuple[int, list[bytes]]:
        """Copy out the events of the records from mapping offset `offset` to
        `end` or to the first one not submitted yet; and where that stopped."""
        words, data = self._words, self._producer_and_data
        events: list[bytes] = []
        append = events.append
        while offset < end:
            length = words[offset >> 2]
            event = offset + HEADER_BYTES
            if length < DISCARD_BIT:  # neither of the top two bits set: submitted, in one comparison
                append(data[event:event + length])
            elif length & BUSY_BIT:
                break
            offset = event + (length & LENGTH_MASK) + 7 & ~7
        return offset, events

    def close(self) -> None:
        for view in (self._words, self._producer_pos, self._consumer_pos):
            view.release()  # a map with views exported cannot be closed
        self._producer_and_data.close()
        self._consumer_page.close()


def bpf_root() -> Path:
    """The folder holding every connector's C (bpf/ in the repository)."""
    return Path(str(resources.files("tracedb.bpf")))


def bpf_source_dir(connector: str) -> Path:
    return bpf_root() / connector


def render_cflags(defines: dict[str, int | str | None], include_dir: Path) -> list[str]:
    flags = [f"-I{include_dir}", f"-I{bpf_root()}", *CFLAGS]  # bpf/ itself holds common/
    for name, value in defines.items():
        flags.append(f"-D{name}" if value is None else f"-D{name}={value}")
    return flags


class BpfProgram:
    """One compiled and attached BPF program; `close()` detaches everything."""

    def __init__(self, connector: str, defines: dict[str, int | str | None]):
        self.source_dir = bpf_source_dir(connector)
        self.source = self.source_dir / f"{connector}.c"
        self.cflags = render_cflags(defines, self.source_dir)
        self.bpf = None
        self._rings: list[tuple[MappedRingbuf, RawRing]] = []

    def load(self) -> None:
        """Compile, load and attach (BCC attaches TRACEPOINT_PROBEs on load)."""
        try:
            from bcc import BPF
        except ImportError as e:
            raise Unavailable(f"BCC's Python module is not importable ({e}); run `tracedb doctor --fix`") from None
        try:
            self.bpf = BPF(src_file=str(self.source).encode(), cflags=self.cflags)
        except Exception as e:
            raise Unavailable(f"{self.source.name} did not compile or load: {e}") from None

    def open_ring(self, map_name: str, dtype: np.dtype | None, limit_bytes: float = math.inf) -> RawRing:
        table = self.bpf[map_name.encode()]
        ring = RawRing(dtype, limit_bytes)
        self._rings.append((MappedRingbuf(table.map_fd, table.max_entries), ring))
        return ring

    def drain(self) -> None:
        """Copy out what every ring holds, in the order the rings were opened."""
        for source, ring in self._rings:
            ring.hold(source.read())

    def array_values(self, map_name: str) -> list[int]:
        return [v.value for v in self.bpf[map_name.encode()].values()]

    def array_sum(self, map_name: str) -> int:
        return sum(self.array_values(map_name))

    def close(self) -> None:
        for source, _ in self._rings:
            source.close()
        self._rings = []
        if self.bpf is not None:
            self.bpf.cleanup()
            self.bpf = None


class Drainer:
    """A thread draining `program`'s rings every `period_s`, for a reader
    that takes their events from another thread (see RawRing).

    It keeps the priority of the thread that starts it: a connector's
    decoding may run nicer (the collector's `nice`) and be starved by a busy
    node, while draining, a copy of ~1 us per event, keeps up, so the backlog
    waits in user space instead of overflowing the kernel's ring. An error
    stops the thread; `check()` raises it in the reader's."""

    def __init__(self, program: BpfProgram, period_s: float):
        self.program = program
        self.period_s = period_s
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tracedb-drain", daemon=True)

    def start(self) -> Drainer:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.period_s):
                self.program.drain()
        except BaseException as e:  # handed to the reader's thread by check()
            self.error = e

    def check(self) -> None:
        """Raise what stopped the thread, if anything did."""
        if self.error is not None:
            raise RuntimeError(f"draining the rings failed: {self.error}") from self.error

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
