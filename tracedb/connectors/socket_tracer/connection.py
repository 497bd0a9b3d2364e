"""What the user side knows of one traced connection.

Built from the kernel's connection events (open, protocol inferred, close);
holds the two stream buffers and, once the protocol is known, its trace.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field, replace

import numpy as np

from tracedb.clock import NS_PER_TICK, upid
from tracedb.connectors.socket_tracer.events import Direction, Endpoint, Protocol, Role, Transport, endpoint
from tracedb.connectors.socket_tracer.protocols import TRACES, Trace
from tracedb.connectors.socket_tracer.streams import DatagramBuffer, StreamBuffer

ROLE_NAMES = {Role.UNKNOWN: "unknown", Role.CLIENT: "client", Role.SERVER: "server"}


@dataclass(eq=False)  # identity: connections are kept in sets
class Connection:
    conn_id: int
    upid: str
    pid: int
    family: int
    local: Endpoint
    remote: Endpoint
    role: Role
    transport: Transport = Transport.TCP
    protocol: Protocol = Protocol.UNKNOWN
    trace: Trace | None = None
    streams: dict[Direction, StreamBuffer | DatagramBuffer] = field(default_factory=dict)
    closed_at_ns: int | None = None
    parse_errors_reported: int = 0

    def __post_init__(self):
        buffer = StreamBuffer if self.transport == Transport.TCP else DatagramBuffer
        self.streams = {Direction.SEND: buffer(), Direction.RECV: buffer()}

    @classmethod
    def from_event_id(cls, conn: np.void) -> Connection:
        """From the `id` part (struct conn_id) of a connection event."""
        pid = int(conn["tgid"])
        return cls(
            conn_id=int(conn["conn_id"]),
            upid=upid(pid, int(conn["start_boottime_ns"]) // NS_PER_TICK),
            pid=pid,
            family=int(conn["family"]),
            local=endpoint(conn["family"], conn["laddr"], conn["lport"]),
            remote=endpoint(conn["family"], conn["raddr"], conn["rport"]),
            role=Role(int(conn["role"])),
            transport=Transport(int(conn["transport"])),
        )

    def with_peer(self, peer: Endpoint, body_limit: int) -> Connection:
        """The part of an unconnected UDP socket's traffic exchanged with one peer."""
        part = replace(self, remote=peer, trace=None, parse_errors_reported=0)
        part.learn_protocol(self.protocol, self.role, body_limit)
        return part

    def learn_protocol(self, protocol: Protocol, role: Role, body_limit: int) -> None:
        self.protocol, self.role = protocol, role
        trace_class = TRACES.get((protocol, self.transport))
        if self.trace is None and trace_class is not None:
            self.trace = trace_class(body_limit)

    def columns(self) -> dict:
        """The columns every protocol table shares."""
        return {
            "upid": self.upid,
            "pid": self.pid,
            "remote_addr": self.remote.addr,
            "remote_port": self.remote.port,
            "local_addr": self.local.addr,
            "local_port": self.local.port,
            "trace_role": ROLE_NAMES[self.role],
            "encrypted": False,
            "conn_id": self.conn_id,
        }

    def take_new_parse_errors(self) -> int:
        """Parse errors of this connection's trace not reported before."""
        new = self.trace.parse_errors - self.parse_errors_reported if self.trace else 0
        self.parse_errors_reported += new
        return new

    def request_side(self, direction: Direction) -> bool:
        return (direction == Direction.SEND) == (self.role == Role.CLIENT)

    def feed_trace(self) -> None:
        """Hand the bytes gathered since the last call to the trace, both directions in time order."""
        pieces = [
            [(p.time_ns, i, direction, p) for i, p in enumerate(stream.take())]
            for direction, stream in self.streams.items()
        ]
        if self.trace is None or self.role == Role.UNKNOWN:
            return
        for _, _, direction, piece in heapq.merge(*pieces, key=lambda item: (item[0], item[1])):
            request_side = self.request_side(direction)
            if piece.gap:
                self.trace.on_gap(request_side, piece.gap, piece.time_ns)
            else:
                self.trace.on_bytes(request_side, piece.data, piece.time_ns)
