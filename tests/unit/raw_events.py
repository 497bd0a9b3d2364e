"""The socket tracer's raw events as its BPF program submits them (the C
structs of bpf/socket_tracer/socket_tracer.h), and a stand-in for the
program that hands them to the connector's rings: for decoding tests and
bench/decode_cost.py, without a kernel."""

from __future__ import annotations

import threading

import numpy as np

from tracedb.connectors.bpf import RawRing
from tracedb.connectors.socket_tracer.connector import SocketTracer
from tracedb.connectors.socket_tracer.events import CONN_EVENT, DATA_EVENT, ConnEventKind, Direction, Protocol, Role

CONN_ID = 7


def conn_event(kind: ConnEventKind, time_ns: int, conn_id: int = CONN_ID, protocol: Protocol = Protocol.HTTP,
               role: Role = Role.SERVER, rport: int = 40000) -> bytes:
    """A connection event of 127.0.0.1:80 (tgid 42, TCP) with 127.0.0.1:rport."""
    event = np.zeros((), CONN_EVENT)
    event["time_ns"], event["kind"], event["protocol"] = time_ns, kind, protocol
    conn = event["id"]
    conn["conn_id"], conn["tgid"], conn["family"], conn["role"], conn["transport"] = conn_id, 42, 2, role, 1
    conn["lport"], conn["rport"] = 80, rport
    conn["laddr"][:4] = conn["raddr"][:4] = (127, 0, 0, 1)
    return event.tobytes()


def data_event(direction: Direction, pos: int, payload: bytes, time_ns: int, size: int | None = None,
               conn_id: int = CONN_ID, protocol: Protocol = Protocol.HTTP, role: Role = Role.SERVER) -> bytes:
    """A data event carrying payload (size: the bytes the syscall moved, if more were left uncaptured)."""
    header = np.zeros((), DATA_EVENT)
    header["time_ns"], header["conn_id"], header["pos"] = time_ns, conn_id, pos
    header["size"], header["captured"] = len(payload) if size is None else size, len(payload)
    header["direction"], header["protocol"], header["role"] = direction, protocol, role
    return header.tobytes() + payload


class FakeProgram:
    """Stands for BpfProgram: submitted events reach the rings at drain().
    Submitting and draining may happen in two threads, as the kernel and a
    drain thread do."""

    def __init__(self):
        self.bpf = {b"conn_info_map": {}, b"not_inet_stream": {}}
        self.rings: dict[str, RawRing] = {}
        self.submitted: list[tuple[str, bytes]] = []
        self.drains = 0
        self.kernel_lost = 0
        self._lock = threading.Lock()

    def load(self) -> None:
        pass

    def open_ring(self, name: str, dtype, limit_bytes) -> RawRing:
        self.rings[name] = RawRing(dtype, limit_bytes)
        return self.rings[name]

    def submit(self, events: list[tuple[str, bytes]]) -> None:
        """(ring name, raw event) pairs, in submission order."""
        with self._lock:
            self.submitted += events

    def drain(self) -> None:
        with self._lock:
            submitted, self.submitted = self.submitted, []
        self.drains += 1
        for ring, raw in submitted:
            self.rings[ring].hold([raw])

    def array_values(self, name: str) -> list[int]:
        return [self.kernel_lost, 0, 0]

    def close(self) -> None:
        pass


def tracer_with(program: FakeProgram, **options) -> SocketTracer:
    """A socket tracer reading `program`'s rings."""
    tracer = SocketTracer(**options)
    tracer.start_with(program)
    return tracer
