"""Which protocol trace parses which inferred protocol.

A `Trace` lives as long as one connection. The connector feeds it the
connection's bytes in time order, each piece marked as being on the request
side (what a client sends, what a server receives) or the response side, and
collects the finished rows of its table. Each protocol module of
tracedb.protocols defines its Trace next to its parser. Adding a protocol:
that module, its schema file, its inference rule in bpf/socket_tracer/ (and
the enum value in socket_tracer.h and events.py), and one line in TRACES.
"""

from __future__ import annotations

from typing import ClassVar, Protocol as TypingProtocol

from tracedb.connectors.socket_tracer.events import Protocol, Transport
from tracedb.protocols.dns import DnsTcpTrace, DnsTrace
from tracedb.protocols.http import HttpTrace
from tracedb.protocols.mysql import MysqlTrace
from tracedb.protocols.pgsql import PgsqlTrace
from tracedb.protocols.redis import RedisTrace


class Trace(TypingProtocol):
    table: ClassVar[str]
    parse_errors: int

    def on_bytes(self, request_side: bool, data: bytes, time_ns: int) -> None: ...
    def on_gap(self, request_side: bool, lost_bytes: int, time_ns: int) -> None: ...
    def on_close(self, time_ns: int) -> None: ...
    def take_rows(self) -> list[dict] | list[tuple]:
        """Finished rows: the protocol's own columns plus `time_ns`, the
        timestamp (as given to on_bytes) of the request's first byte, as
        dicts, or as tuples of the trace class's `row_fields` if it has them.
        The connector adds the connection's columns (addresses, pid, ...)."""
        ...


# (protocol as inferred in the kernel, transport) -> the trace that parses it.
TRACES: dict[tuple[Protocol, Transport], type] = {
    (Protocol.HTTP, Transport.TCP): HttpTrace,
    (Protocol.REDIS, Transport.TCP): RedisTrace,
    (Protocol.PGSQL, Transport.TCP): PgsqlTrace,
    (Protocol.MYSQL, Transport.TCP): MysqlTrace,
    (Protocol.DNS, Transport.UDP): DnsTrace,
    (Protocol.DNS, Transport.TCP): DnsTcpTrace,
}

TABLES = tuple(sorted({trace.table for trace in TRACES.values()}))
