"""Loading a connector's BPF program with BCC and draining its ring buffers.

The C lives in `bpf/<connector>/` (shipped as package data `tracedb.bpf`) and is
configured only through `-D` defines, never by editing its text. Ring buffer
callbacks copy each event's raw bytes and nothing else; connectors decode the
collected bytes in numpy passes. Events are submitted with BPF_RB_NO_WAKEUP,
so `drain()` consumes on the connector's timer instead of waiting for wakeups.
What a ring holds in user space may be bounded in bytes: past the bound,
events are dropped whole, and counted.
"""

from __future__ import annotations

import ctypes
import math
from collections import deque
from importlib import resources
from pathlib import Path

import numpy as np

from tracedb.connectors.base import Unavailable

# Harmless warnings of kernel headers older or newer than the clang BCC embeds.
CFLAGS = ["-Wno-ignored-attributes", "-Wno-duplicate-decl-specifier", "-Wno-unused-command-line-argument"]


class RawRing:
    """Raw event bytes copied out of one BPF ring buffer, oldest first, held
    until taken. At most `limit_bytes` are held: an event that would pass the
    limit is dropped (and counted in `dropped`), which empties the kernel's
    ring all the same."""

    def __init__(self, dtype: np.dtype | None, limit_bytes: float = math.inf):
        self.dtype = dtype  # None for variable-size events
        self.limit_bytes = limit_bytes
        self.held_bytes = 0
        self.taken = 0  # events taken so far
        self.dropped = 0
        self._chunks: deque[bytes] = deque()

    def callback(self, _ctx, data, size) -> int:
        if self.held_bytes + size > self.limit_bytes:
            self.dropped += 1
            return 0
        self._chunks.append(ctypes.string_at(data, size))
        self.held_bytes += size
        return 0

    def __len__(self) -> int:
        """Events held."""
        return len(self._chunks)

    @property
    def added(self) -> int:
        """Events held so far, taken or not."""
        return self.taken + len(self._chunks)

    def take_raw(self, max_events: int | None = None) -> list[bytes]:
        """The oldest events held (all, or at most max_events), as their bytes."""
        if max_events is None or max_events >= len(self._chunks):
            chunks, self._chunks = list(self._chunks), deque()
        else:
            popleft = self._chunks.popleft
            chunks = [popleft() for _ in range(max_events)]
        self.held_bytes -= sum(map(len, chunks))
        self.taken += len(chunks)
        return chunks

    def take(self, max_events: int | None = None) -> np.ndarray:
        """The oldest (fixed-size) events held (all, or at most max_events), as a structured array."""
        return np.frombuffer(b"".join(self.take_raw(max_events)), dtype=self.dtype)


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
        self._rings: dict[str, RawRing] = {}

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
        ring = RawRing(dtype, limit_bytes)
        self.bpf[map_name.encode()].open_ring_buffer(ring.callback)
        self._rings[map_name] = ring
        return ring

    def drain(self) -> None:
        if self._rings:
            self.bpf.ring_buffer_consume()

    def array_values(self, map_name: str) -> list[int]:
        return [v.value for v in self.bpf[map_name.encode()].values()]

    def array_sum(self, map_name: str) -> int:
        return sum(self.array_values(map_name))

    def close(self) -> None:
        if self.bpf is not None:
            self.bpf.cleanup()
            self.bpf = None
