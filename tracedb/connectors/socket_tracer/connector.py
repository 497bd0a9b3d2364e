"""socket_tracer: loads bpf/socket_tracer/ and turns its events into
conn_stats and the protocol tables (http_events).

Every sampling period (50 ms) the ring buffers are drained (raw copies only).
Every push period (1 s) the collected events are decoded: connection events
first (opens, inferred protocols), then data events into each connection's
stream buffers, then each touched connection's bytes go to its protocol
trace in time order, then closes. conn_stats reads the kernel's byte counts
of open connections from conn_info_map.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from tracedb.clock import BootClock
from tracedb.connectors.base import Connector, Unavailable
from tracedb.connectors.bpf import BpfProgram
from tracedb.connectors.registry import register
from tracedb.connectors.socket_tracer.conn_stats import ConnStats
from tracedb.connectors.socket_tracer.connection import Connection
from tracedb.connectors.socket_tracer.events import (
    CONN_EVENT,
    ConnEventKind,
    Direction,
    Endpoint,
    Protocol,
    Role,
    Transport,
    endpoint,
    split_data_events,
)
from tracedb.connectors.socket_tracer.protocols import TABLES
from tracedb.kernel import btf
from tracedb.schema import get_schema

KERNEL_FIELDS = {
    "TASK_FILES_OFF": ("task_struct", "files"),
    "TASK_START_BOOTTIME_OFF": ("task_struct", "start_boottime"),
    "TASK_GROUP_LEADER_OFF": ("task_struct", "group_leader"),
    "FILES_FDT_OFF": ("files_struct", "fdt"),
    "FDTABLE_MAX_FDS_OFF": ("fdtable", "max_fds"),
    "FDTABLE_FD_OFF": ("fdtable", "fd"),
    "FILE_F_INODE_OFF": ("file", "f_inode"),
    "FILE_PRIVATE_DATA_OFF": ("file", "private_data"),
    "INODE_I_MODE_OFF": ("inode", "i_mode"),
    "SOCKET_SK_OFF": ("socket", "sk"),
    "SK_TYPE_OFF": ("sock", "sk_type"),
    "SK_PROTOCOL_OFF": ("sock", "sk_protocol"),
}
# Members of struct sock_common, which sits in struct sock as __sk_common.
SOCK_COMMON_FIELDS = {
    "SKC_FAMILY_OFF": "skc_family",
    "SKC_NUM_OFF": "skc_num",
    "SKC_DPORT_OFF": "skc_dport",
    "SKC_RCV_SADDR_OFF": "skc_rcv_saddr",
    "SKC_DADDR_OFF": "skc_daddr",
    "SKC_V6_RCV_SADDR_OFF": "skc_v6_rcv_saddr",
    "SKC_V6_DADDR_OFF": "skc_v6_daddr",
}
CAPTURE_LIMIT = 32768  # CAPTURE_MASK + 1 in the C
LOST_SLOTS = ("data events", "connection events", "connection table full")
REAP_EVERY_S = 5.0


@dataclass(frozen=True)
class SocketTracerOptions:
    max_capture_bytes: int = 30 * 1024  # per syscall, like Stirling's default
    body_limit: int = 1024  # body bytes kept per message in the tables
    pids: tuple[int, ...] = ()  # trace only these processes (empty: all)
    ports: tuple[int, ...] = ()  # trace only connections with one of these ports (empty: all)
    data_ring_bytes: int = 32 << 20  # absorbs bursts between drains (50 ms) and decode pauses

    def __post_init__(self):
        if not 0 < self.max_capture_bytes <= CAPTURE_LIMIT:
            raise ValueError(f"max_capture_bytes must be in 1..{CAPTURE_LIMIT}, got {self.max_capture_bytes}")
        if self.body_limit < 0:
            raise ValueError("body_limit must be >= 0")


def _pages(size_bytes: int) -> int:
    """Ring size in pages, rounded up to a power of two as the kernel requires."""
    pages = max(1, size_bytes // os.sysconf("SC_PAGE_SIZE"))
    return 1 << (pages - 1).bit_length()


def kernel_offsets() -> dict[str, int]:
    try:
        found = btf.offsets([*KERNEL_FIELDS.values(), ("sock", "__sk_common")] +
                            [("sock_common", m) for m in SOCK_COMMON_FIELDS.values()])
    except btf.BtfError as e:
        raise Unavailable(f"cannot read socket struct offsets from BTF: {e}") from None
    defines = {name: found[".".join(field)] for name, field in KERNEL_FIELDS.items()}
    base = found["sock.__sk_common"]
    defines.update({name: base + found[f"sock_common.{m}"] for name, m in SOCK_COMMON_FIELDS.items()})
    return defines


@register
class SocketTracer(Connector):
    name = "socket_tracer"
    tables = ("conn_stats", *TABLES)
    description = "TCP and UDP connections of every process and their protocols' traffic, from syscall tracepoints (BPF)."
    sampling_period_s = 0.05
    push_period_s = 1.0
    needs_bpf = True

    def __init__(self, **options) -> None:
        super().__init__()
        self.options = SocketTracerOptions(**options)
        self.clock = BootClock.now()
        self.program: BpfProgram | None = None
        self.connections: dict[int, Connection] = {}
        # Unconnected UDP sockets: their traffic with each peer, as a connection of its own.
        self.peer_parts: dict[tuple[int, Endpoint], Connection] = {}
        self.conn_stats = ConnStats()
        self._last_reap = time.monotonic()

    # -- lifecycle -----------------------------------------------------------

    def defines(self) -> dict[str, int | None]:
        defines: dict[str, int | None] = dict(kernel_offsets())
        defines.update(
            SELF_TGID=os.getpid(),
            MAX_CAPTURE=self.options.max_capture_bytes,
            DATA_RING_PAGES=_pages(self.options.data_ring_bytes),
            CONN_RING_PAGES=_pages(1 << 20),
            MAX_CPUS=os.cpu_count() or 1,
        )
        if self.options.pids:
            defines["FILTER_PIDS"] = None
        if self.options.ports:
            defines["FILTER_PORTS"] = None
        return defines

    def start(self) -> None:
        self.program = BpfProgram("socket_tracer", self.defines())
        self.program.load()
        self._fill_filters()
        self.conn_ring = self.program.open_ring("conn_ring", CONN_EVENT)
        self.data_ring = self.program.open_ring("data_ring", None)

    def _fill_filters(self) -> None:
        bpf = self.program.bpf
        for pid in self.options.pids:
            table = bpf[b"target_pids"]
            table[table.Key(pid)] = table.Leaf(1)
        for port in self.options.ports:
            table = bpf[b"target_ports"]
            table[table.Key(port)] = table.Leaf(1)

    def stop(self) -> None:
        if self.program is not None:
            self.program.close()
            self.program = None

    # -- the two clocks --------------------------------------------------------

    def sample(self) -> None:
        self.program.drain()

    def flush(self) -> dict[str, pa.RecordBatch]:
        self.program.drain()
        conn_events = self.conn_ring.take()
        headers, payloads = split_data_events(self.data_ring.take_raw())
        self.stats.events += len(conn_events) + len(headers)

        closed = self._apply_conn_events(conn_events)
        touched = self._route_data(headers, payloads) | closed
        for conn in touched:
            conn.feed_trace()
        rows = self._take_protocol_rows(touched)
        self._forget(closed)
        self._read_open_counters()
        if time.monotonic() - self._last_reap > REAP_EVERY_S:
            self._reap_dead_processes()

        now_us = time.time_ns() // 1000
        self.stats.events_lost = self.program.array_sum("lost")
        batches = {"conn_stats": _batch("conn_stats", self.conn_stats.take_rows(now_us))}
        for table in TABLES:
            batches[table] = _batch(table, rows.get(table, []))
        return batches

    # -- connection events -------------------------------------------------------

    def _apply_conn_events(self, events: np.ndarray) -> set[Connection]:
        """Opens and protocol news take effect now; closed connections (with
        their peer parts) are returned, to be finished after this flush's data,
        which may hold their last bytes."""
        closed: set[Connection] = set()
        for event in events:
            conn = self._connection_for(event)
            kind = ConnEventKind(int(event["kind"]))
            if kind == ConnEventKind.PROTOCOL:
                conn.learn_protocol(Protocol(int(event["protocol"])), Role(int(event["id"]["role"])), self.options.body_limit)
                self.conn_stats.protocol_known(conn)
            elif kind == ConnEventKind.CLOSE:
                self.conn_stats.closed(conn.conn_id, int(event["bytes_sent"]), int(event["bytes_recv"]))
                closed |= self._close(conn, int(event["time_ns"]))
        return closed

    def _close(self, conn: Connection, time_ns: int) -> set[Connection]:
        parts = {part for (conn_id, _), part in self.peer_parts.items() if conn_id == conn.conn_id}
        for c in parts | {conn}:
            c.closed_at_ns = time_ns
        return parts | {conn}

    def _connection_for(self, event: np.void) -> Connection:
        conn_id = int(event["id"]["conn_id"])
        conn = self.connections.get(conn_id)
        if conn is None:
            conn = Connection.from_event_id(event["id"])
            self.connections[conn_id] = conn
            self.conn_stats.opened(conn)
        return conn

    def _forget(self, closed: set[Connection]) -> None:
        for conn in closed:
            self.connections.pop(conn.conn_id, None)
            self.peer_parts.pop((conn.conn_id, conn.remote), None)

    # -- data events ---------------------------------------------------------------

    def _route_data(self, headers: np.ndarray, payloads: list[bytes]) -> set[Connection]:
        touched: set[Connection] = set()
        names = ("conn_id", "pos", "size", "time_ns", "direction", "protocol", "role", "peer_family")
        fields = [headers[f].tolist() for f in names]
        for i, (conn_id, pos, size, time_ns, direction, protocol, role, peer_family) in enumerate(zip(*fields)):
            conn = self.connections.get(conn_id)
            if conn is None:
                self.stats.decode_errors += 1  # its open event was lost
                continue
            if conn.trace is None and protocol != Protocol.UNKNOWN:
                # The data event may overtake the protocol event (another ring).
                conn.learn_protocol(Protocol(protocol), Role(role), self.options.body_limit)
            if peer_family:
                conn = self._peer_part(conn, endpoint(peer_family, headers["peer_addr"][i], headers["peer_port"][i]))
            conn.streams[Direction(direction)].add(pos, size, payloads[i], time_ns)
            touched.add(conn)
        return touched

    def _peer_part(self, conn: Connection, peer: Endpoint) -> Connection:
        if conn.transport != Transport.UDP or peer == conn.remote:
            return conn
        part = self.peer_parts.get((conn.conn_id, peer))
        if part is None:
            part = self.peer_parts[(conn.conn_id, peer)] = conn.with_peer(peer, self.options.body_limit)
        return part

    def _take_protocol_rows(self, conns: set[Connection]) -> dict[str, list[dict]]:
        rows: dict[str, list[dict]] = {}
        for conn in conns:
            if conn.trace is None:
                continue
            if conn.closed_at_ns is not None:
                conn.trace.on_close(conn.closed_at_ns)
            common = conn.columns()
            for row in conn.trace.take_rows():
                row["time_"] = int(self.clock.boot_ns_to_epoch_us(row.pop("time_ns")))
                row.update(common)
                rows.setdefault(conn.trace.table, []).append(row)
            self.stats.decode_errors += conn.take_new_parse_errors()
        return rows

    # -- kernel counters and housekeeping -----------------------------------------

    def _read_open_counters(self) -> None:
        for _, info in self.program.bpf[b"conn_info_map"].items():
            self.conn_stats.update(info.id.conn_id, info.bytes_sent, info.bytes_recv)

    def _reap_dead_processes(self) -> None:
        """Forget connections of processes that exited without closing them."""
        self._last_reap = time.monotonic()
        table = self.program.bpf[b"conn_info_map"]
        for key, info in list(table.items()):
            conn = self.connections.get(info.id.conn_id)
            # A connection whose open event is not decoded yet waits for the next round.
            if conn is not None and not os.path.exists(f"/proc/{info.id.tgid}"):
                self.conn_stats.closed(info.id.conn_id, info.bytes_sent, info.bytes_recv)
                self._forget(self._close(conn, time.clock_gettime_ns(time.CLOCK_BOOTTIME)))
                del table[key]
        negatives = self.program.bpf[b"not_inet_stream"]
        for key in list(negatives.keys()):
            if not os.path.exists(f"/proc/{key.value >> 32}"):
                del negatives[key]


def _batch(table: str, rows: list[dict]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist(rows, schema=get_schema(table).arrow_schema)
