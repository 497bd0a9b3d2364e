"""Loading a connector's BPF program with BCC and draining its ring buffers.

The C lives in `bpf/<connector>/` (shipped as package data `tracedb.bpf`) and is
configured only through `-D` defines, never by editing its text. Ring buffer
callbacks copy each event's raw bytes and nothing else; connectors decode the
collected bytes in one numpy pass per flush. Events are submitted with
BPF_RB_NO_WAKEUP, so `drain()` consumes on the connector's timer instead of
waiting for wakeups.
"""

from __future__ import annotations

import ctypes
from importlib import resources
from pathlib import Path

import numpy as np

from tracedb.connectors.base import Unavailable

# Harmless warnings of kernel headers older or newer than the clang BCC embeds.
CFLAGS = ["-Wno-ignored-attributes", "-Wno-duplicate-decl-specifier", "-Wno-unused-command-line-argument"]


class RawRing:
    """Raw event bytes copied out of one BPF ring buffer."""

    def __init__(self, dtype: np.dtype | None):
        self.dtype = dtype  # None for variable-size events
        self._chunks: list[bytes] = []

    def callback(self, _ctx, data, size) -> int:
        self._chunks.append(ctypes.string_at(data, size))
        return 0

    def take_raw(self) -> list[bytes]:
        """Every event collected since the last take, as its bytes."""
        chunks, self._chunks = self._chunks, []
        return chunks

    def take(self) -> np.ndarray:
        """Every (fixed-size) event collected since the last take, as a structured array."""
        return np.frombuffer(b"".join(self.take_raw()), dtype=self.dtype)


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

    def open_ring(self, map_name: str, dtype: np.dtype | None) -> RawRing:
        ring = RawRing(dtype)
        self.bpf[map_name.encode()].open_ring_buffer(ring.callback)
        self._rings[map_name] = ring
        return ring

    def drain(self) -> None:
        if self._rings:
            self.bpf.ring_buffer_consume()

    def array_sum(self, map_name: str) -> int:
        return sum(v.value for v in self.bpf[map_name.encode()].values())

    def close(self) -> None:
        if self.bpf is not None:
            self.bpf.cleanup()
            self.bpf = None
