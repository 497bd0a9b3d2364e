"""What the user side knows of one traced connection.

Built from the kernel's connection events (open, protocol inferred, close);
holds the two stream buffers and, once the protocol is known, its trace.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from itertools import repeat

import numpy as np

from tracedb.clock import NS_PER_TICK, upid
from tracedb.connectors.socket_tracer.events import Direction, Endpoint, Protocol, Role, Transport, endpoint
from tracedb.connectors.socket_tracer.protocols import TRACES, Trace
from tracedb.connectors.socket_tracer.streams import DatagramBuffer, Piece, StreamBuffer

ROLE_NAMES = {Role.UNKNOWN: "unknown", Role.CLIENT: "client", Role.SERVER: "server"}
# Members for the hot path: looking one up on its enum class costs ~0.3 µs (Python 3.11).
SEND, RECV, CLIENT, UNKNOWN_ROLE = Direction.SEND, Direction.RECV, Role.CLIENT, Role.UNKNOWN
# The columns every protocol table shares: Connection.columns().
COMMON_COLUMNS = ("upid", "pid", "remote_addr", "remote_port", "local_addr", "local_port", "trace_role",
                  "encrypted", "conn_id")


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
    parse_errors_reported: int = 0
    # columns() as last built: a connection with rows in every slice would otherwise build it every time.
    _columns: dict | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        buffer = StreamBuffer if self.transport == Transport.TCP else DatagramBuffer
        self.streams = {Direction.SEND: buffer(), Direction.RECV: buffer()}

    @classmethod
    def from_event_id(cls, conn: np.void) -> Connection:
        """From the `id` part (struct conn_id) of a connection event."""
        f = dict(zip(conn.dtype.names, conn.tolist()))  # Python values at once: numpy scalars are slow
        pid = f["tgid"]
        return cls(
            conn_id=f["conn_id"],
            upid=upid(pid, f["start_boottime_ns"] // NS_PER_TICK),
            pid=pid,
            family=f["family"],
            local=endpoint(f["family"], f["laddr"], f["lport"]),
            remote=endpoint(f["family"], f["raddr"], f["rport"]),
            role=Role(f["role"]),
            transport=Transport(f["transport"]),
        )

    def with_peer(self, peer: Endpoint, body_limit: int) -> Connection:
        """The part of an unconnected UDP socket's traffic exchanged with one peer."""
        part = replace(self, remote=peer, trace=None, parse_errors_reported=0)
        part.learn_protocol(self.protocol, self.role, body_limit)
        return part

    def learn_protocol(self, protocol: Protocol, role: Role, body_limit: int) -> None:
        self.protocol, self.role = protocol, role
        self._columns = None  # the role may have changed
        trace_class = TRACES.get((protocol, self.transport))
        if self.trace is None and trace_class is not None:
            self.trace = trace_class(body_limit)

    def columns(self) -> dict:
        """The columns every protocol table shares (COMMON_COLUMNS); the same dict until the role is learned."""
        if self._columns is None:
            values = (self.upid, self.pid, self.remote.addr, self.remote.port, self.local.addr, self.local.port,
                      ROLE_NAMES[self.role], False, self.conn_id)
            self._columns = dict(zip(COMMON_COLUMNS, values))
        return self._columns

    def take_new_parse_errors(self) -> int:
        """Parse errors of this connection's trace not reported before."""
        new = self.trace.parse_errors - self.parse_errors_reported if self.trace else 0
        self.parse_errors_reported += new
        return new

    def feed_trace(self) -> None:
        """Hand the bytes gathered since the last call to the trace, both directions in time order."""
        send, recv = self.streams[SEND].take(), self.streams[RECV].take()
        trace = self.trace
        if trace is None or self.role == UNKNOWN_ROLE:
            return
        requests, responses = (send, recv) if self.role == CLIENT else (recv, send)
        for request_side, (_, size, data, time_ns) in _in_time_order(requests, responses):
            if data:
                trace.on_bytes(request_side, data, time_ns)
            elif size:
                trace.on_gap(request_side, size, time_ns)


def _in_time_order(requests: list[Piece], responses: list[Piece]) -> Iterable[tuple[bool, Piece]]:
    """(request side?, piece) for the pieces of both sides, merged by time;
    each side's pieces keep their (stream) order. Usually only one side has
    pieces, or they alternate."""
    if not responses:
        return zip(repeat(True), requests)
    if not requests:
        return zip(repeat(False), responses)
    return _merged(requests, responses)


def _merged(requests: list[Piece], responses: list[Piece]) -> Iterator[tuple[bool, Piece]]:
    """On equal times the request goes first: it cannot follow its response."""
    i, j, request_count, response_count = 0, 0, len(requests), len(responses)
    while i < request_count and j < response_count:
        request, response = requests[i], responses[j]
        if request[3] <= response[3]:  # time_ns
            yield True, request
            i += 1
        else:
            yield False, response
            j += 1
    yield from zip(repeat(True), requests[i:])
    yield from zip(repeat(False), responses[j:])
