"""socket_tracer: loads bpf/socket_tracer/ and turns its events into
conn_stats and the protocol tables (http_events).

Decoding is spread over both clocks: each sampling tick (50 ms) decodes for
most of its period, each push (1 s) for at most FLUSH_DECODE_S and then turns
the rows gathered since the last push into record batches. It goes a slice of
events at a time. The ring buffers are drained (raw copies) by a thread of
their own every DRAIN_EVERY_S (bpf.Drainer), at the priority of the thread
that started the connector, not the collector's nicer one: flat-out pgbench's
16 busy threads left the decoding thread at nice 10 ~5 % of a core, too
little to drain the kernel's ring in time, and a third of the events were
lost there; drained, they wait for the decoder instead.
Between steps of decoding (a connection's bytes, a slice, a column of an
Arrow conversion), at most every YIELD_EVERY_NS, the thread offers its CPU
to any thread waiting for it (sched_yield). Without that, a node's application woken while the decoder
runs Python waits for the decoder's time slice to end, or on a kernel built
without preemption (PREEMPT_NONE, common on servers) for the next tick, 4 ms
at HZ=250. bench/http_overhead.py at a paced ~11.8k requests/s (nginx + wrk,
both ends traced, 2 CPUs): p99 latency x5.2 before, x1.5 and x3.3 in two
runs after, throughput ratio 0.92 -> 0.95, every request found; 10 % of
nginx's and wrk's wakeups had waited over 32 us in the run queue (0.8 %
untraced), up to 4-8 ms. Offers cost nothing measurable (decode_cost.py).

Drained events wait in user space, oldest first, within a byte budget
(`backlog_bytes`, raw event bytes): past it, whole events are dropped and
counted as lost, as are the events still waiting when `stop()` comes:
stopping is never held up by a backlog. How many wait, and since when, is
tracedb_connectors.events_waiting and oldest_waiting.

A slice applies connection events (opens, inferred protocols) or, once all
drained so far are applied, routes data events into each connection's stream
buffers, then hands each touched connection's bytes to its protocol trace in
time order. A close takes effect once every data event drained with it or before
has been decoded: they may hold the connection's last bytes. conn_stats
reads the kernel's byte counts of open connections from conn_info_map.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import repeat

import numpy as np
import pyarrow as pa

from tracedb.clock import BootClock
from tracedb.connectors.base import Connector, Unavailable
from tracedb.connectors.bpf import BpfProgram, Drainer, RawRing
from tracedb.connectors.registry import register
from tracedb.connectors.socket_tracer.conn_stats import ConnStats
from tracedb.connectors.socket_tracer.connection import COMMON_COLUMNS, Connection
from tracedb.connectors.socket_tracer.events import (
    CONN_EVENT,
    ConnEventKind,
    Endpoint,
    Protocol,
    Role,
    Transport,
    endpoint,
    split_data_events,
)
from tracedb.connectors.socket_tracer.protocols import TABLES, TRACES
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
    # A syscall's arguments in the user registers saved at its entry (x86-64).
    "ARG0_OFF": ("pt_regs", "di"),
    "ARG1_OFF": ("pt_regs", "si"),
    "ARG2_OFF": ("pt_regs", "dx"),
    "ARG4_OFF": ("pt_regs", "r8"),
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
# The kernel's counters of lost events (the `lost` array), by slot.
LOST_SLOTS = ("data ring full", "connection ring full", "connection table full")
REAP_EVERY_S = 5.0
# The drain thread's period: the kernel's data ring (32 MiB) holds ~0.5 s of
# the busiest load measured (nginx + wrk flat out, both ends traced).
DRAIN_EVERY_S = 0.02
# Data events decoded at a time: ~5 ms of work. Smaller slices cost
# more per event (fewer events per connection per slice): 64 cost 40-70 %.
DECODE_SLICE_EVENTS = 512
YIELD_EVERY_NS = 100_000  # of decoding, at most, between two offers of the CPU
SAMPLE_DECODE_SHARE = 0.8  # of the sampling period, spent decoding at a sampling tick
FLUSH_DECODE_S = 0.5  # decoding at a push, the last one (at stop) included
# Connection events are applied first, a slice at a time, so only a storm of
# ~160k opens and closes faster than that would fill this.
CONN_BACKLOG_BYTES = 16 << 20
ARROW_EVERY_ROWS = 2048  # rows of a table converted at once: ~10 ms, with offers of the CPU between columns
# The connection event fields a slice applies (with the id's conn_id and role).
CONN_EVENT_FIELDS = ("kind", "protocol", "time_ns", "bytes_sent", "bytes_recv")
# The layout of each protocol table's rows as its traces give them: tuples of these fields, or dicts (None).
ROW_FIELDS = {trace.table: getattr(trace, "row_fields", None) for trace in TRACES.values()}
# The data event fields a slice routes to connections.
ROUTED_FIELDS = ("conn_id", "pos", "size", "time_ns", "direction", "protocol", "role", "peer_family")


@dataclass(frozen=True)
class SocketTracerOptions:
    max_capture_bytes: int = 30 * 1024  # per syscall, like Stirling's default
    body_limit: int = 1024  # body bytes kept per message in the tables
    pids: tuple[int, ...] = ()  # trace only these processes (empty: all)
    ports: tuple[int, ...] = ()  # trace only connections with one of these ports (empty: all)
    data_ring_bytes: int = 32 << 20  # absorbs bursts between drains (DRAIN_EVERY_S)
    backlog_bytes: int = 256 << 20  # drained data events awaiting decoding; past it events are dropped

    def __post_init__(self):
        if not 0 < self.max_capture_bytes <= CAPTURE_LIMIT:
            raise ValueError(f"max_capture_bytes must be in 1..{CAPTURE_LIMIT}, got {self.max_capture_bytes}")
        if self.body_limit < 0:
            raise ValueError("body_limit must be >= 0")
        if self.backlog_bytes <= 0:
            raise ValueError("backlog_bytes must be > 0")


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
        self.conn_ring: RawRing | None = None
        self.data_ring: RawRing | None = None
        self._drainer: Drainer | None = None
        # Closes waiting for their data: (data events drained when the close was seen, connection, time).
        self._closing: deque[tuple[int, Connection, int]] = deque()
        # Rows since the last push.
        self._tables = {table: _TableColumns(table, self.clock, ROW_FIELDS[table], self._offer_cpu)
                        for table in TABLES}
        self._abandoned = 0  # events still waiting at stop(), never decoded
        self._kernel_lost = dict.fromkeys(LOST_SLOTS, 0)  # as last read
        self._last_yield_ns = 0
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
        self.start_with(BpfProgram("socket_tracer", self.defines()))
        self._drainer = Drainer(self.program, DRAIN_EVERY_S).start()

    def start_with(self, program: BpfProgram) -> None:
        """Load `program` (bpf/socket_tracer/ as compiled with defines()) and read its rings."""
        self.program = program
        self.program.load()
        self._fill_filters()
        self.conn_ring = self.program.open_ring("conn_ring", CONN_EVENT, CONN_BACKLOG_BYTES)
        self.data_ring = self.program.open_ring("data_ring", None, self.options.backlog_bytes)

    def _fill_filters(self) -> None:
        bpf = self.program.bpf
        for pid in self.options.pids:
            table = bpf[b"target_pids"]
            table[table.Key(pid)] = table.Leaf(1)
        for port in self.options.ports:
            table = bpf[b"target_ports"]
            table[table.Key(port)] = table.Leaf(1)

    def stop(self) -> None:
        if self.program is None:
            return
        if self._drainer is not None:
            self._drainer.stop()
            self._drainer = None
        if self.data_ring is not None:
            self.program.drain()
            for ring in (self.conn_ring, self.data_ring):
                self._abandoned += len(ring.take_raw())
            self._count_waiting()
            self._count_lost()
        self.program.close()
        self.program = None

    # -- the two clocks --------------------------------------------------------

    def sample(self) -> None:
        self._decode(SAMPLE_DECODE_SHARE * self.sampling_period_s)

    def flush(self) -> dict[str, pa.RecordBatch]:
        self._decode(FLUSH_DECODE_S)
        batches = {table: columns.take_batch() for table, columns in self._tables.items()}
        self._read_open_counters()
        if time.monotonic() - self._last_reap > REAP_EVERY_S:
            self._reap_dead_processes()
        self._count_lost()
        batches["conn_stats"] = _batch("conn_stats", self.conn_stats.take_rows(time.time_ns() // 1000))
        return batches

    def losses(self) -> dict[str, int]:
        """stats.events_lost by cause, as of the last push (or stop)."""
        return {**self._kernel_lost, "backlog full": self.conn_ring.dropped + self.data_ring.dropped,
                "left at stop": self._abandoned}

    def _count_lost(self) -> None:
        self._kernel_lost = dict(zip(LOST_SLOTS, self.program.array_values("lost")))
        self.stats.events_lost = sum(self.losses().values())

    # -- decoding ----------------------------------------------------------------

    def _decode(self, budget_s: float) -> None:
        """Drain the rings and decode what waits, a slice at a time, until
        less than a slice was left or budget_s has passed. Data events wait
        until every connection event drained before them has been applied."""
        deadline = time.monotonic() + budget_s
        while True:
            self._drain()
            conn_events = self.conn_ring.take(DECODE_SLICE_EVENTS)
            self._apply_conn_events(conn_events)
            # Counted first: a drain holds connection events before data events (start_with opens
            # the connection ring first), so these data events' connection events are all held
            # by then, and taken if none is left.
            ready = len(self.data_ring)
            events = [] if len(self.conn_ring) else self.data_ring.take_raw(min(ready, DECODE_SLICE_EVENTS))
            self._decode_data(events)
            self._finish_closes()
            self._offer_cpu()
            done = len(conn_events) < DECODE_SLICE_EVENTS and len(events) < DECODE_SLICE_EVENTS
            if done or time.monotonic() >= deadline:
                self._count_waiting()
                return

    def _count_waiting(self) -> None:
        self.stats.events_waiting = len(self.conn_ring) + len(self.data_ring)
        oldest = self.data_ring.oldest()
        # A data event starts with its capture time (CLOCK_BOOTTIME ns, DATA_EVENT's first field).
        self.stats.oldest_waiting_us = (None if oldest is None else
                                        (int.from_bytes(oldest[:8], "little") + self.clock.boot_epoch_ns) // 1000)

    def _drain(self) -> None:
        """Drain the rings, unless the drain thread does (started with the real program)."""
        if self._drainer is None:
            self.program.drain()
        else:
            self._drainer.check()

    def _decode_data(self, events: list[bytes]) -> None:
        if not events:
            return
        self.stats.events += len(events)
        touched = self._route_data(*split_data_events(events))
        for conn in touched:
            conn.feed_trace()
            self._offer_cpu()
        self._take_rows(touched)

    def _offer_cpu(self) -> None:
        """Let a thread waiting for this CPU have it, if YIELD_EVERY_NS passed since the last offer."""
        now = time.monotonic_ns()
        if now - self._last_yield_ns >= YIELD_EVERY_NS:
            os.sched_yield()
            self._last_yield_ns = time.monotonic_ns()

    # -- connection events -------------------------------------------------------

    def _apply_conn_events(self, events: np.ndarray) -> None:
        """Opens and protocol news take effect now; closes once the data
        events drained so far, which may hold their last bytes, are decoded."""
        self.stats.events += len(events)
        ids = events["id"]
        fields = zip(*(events[f].tolist() for f in CONN_EVENT_FIELDS), ids["conn_id"].tolist(), ids["role"].tolist())
        for i, (kind, protocol, time_ns, sent, recv, conn_id, role) in enumerate(fields):
            conn = self.connections.get(conn_id) or self._opened(ids[i])
            if kind == ConnEventKind.PROTOCOL:
                conn.learn_protocol(Protocol(protocol), Role(role), self.options.body_limit)
                self.conn_stats.protocol_known(conn)
            elif kind == ConnEventKind.CLOSE:
                self.conn_stats.closed(conn_id, sent, recv)
                self._closing.append((self.data_ring.added, conn, time_ns))

    def _finish_closes(self) -> None:
        """Finish the closed connections (with their peer parts) whose data is all decoded."""
        while self._closing and self._closing[0][0] <= self.data_ring.taken:
            _, conn, time_ns = self._closing.popleft()
            parts = self._with_peer_parts(conn)
            for part in parts:
                part.feed_trace()
                if part.trace is not None:
                    part.trace.on_close(time_ns)
                self._forget(part)
            self._take_rows(parts)

    def _with_peer_parts(self, conn: Connection) -> list[Connection]:
        return [conn, *(part for (conn_id, _), part in self.peer_parts.items() if conn_id == conn.conn_id)]

    def _opened(self, conn_id: np.void) -> Connection:
        """A connection not known yet, from its `id` (any of its events: the open may have been lost)."""
        conn = self.connections[int(conn_id["conn_id"])] = Connection.from_event_id(conn_id)
        self.conn_stats.opened(conn)
        return conn

    def _forget(self, conn: Connection) -> None:
        self.connections.pop(conn.conn_id, None)
        self.peer_parts.pop((conn.conn_id, conn.remote), None)

    # -- data events ---------------------------------------------------------------

    def _route_data(self, headers: np.ndarray, payloads: list[bytes]) -> dict[Connection, None]:
        """Each event's bytes into its connection's stream buffer; the connections touched, in order."""
        touched: dict[Connection, None] = {}
        connections, body_limit = self.connections, self.options.body_limit
        fields = zip(*(headers[f].tolist() for f in ROUTED_FIELDS), payloads)
        for i, (conn_id, pos, size, time_ns, direction, protocol, role, peer_family, payload) in enumerate(fields):
            conn = connections.get(conn_id)
            if conn is None:
                self.stats.decode_errors += 1  # its open event was lost
                continue
            if conn.trace is None and protocol != Protocol.UNKNOWN:
                # The data event may overtake the protocol event (another ring).
                conn.learn_protocol(Protocol(protocol), Role(role), body_limit)
            if peer_family:
                conn = self._peer_part(conn, endpoint(peer_family, headers["peer_addr"][i], headers["peer_port"][i]))
            conn.streams[direction].add(pos, size, payload, time_ns)  # keyed by Direction, an int
            touched[conn] = None
        return touched

    def _peer_part(self, conn: Connection, peer: Endpoint) -> Connection:
        if conn.transport != Transport.UDP or peer == conn.remote:
            return conn
        part = self.peer_parts.get((conn.conn_id, peer))
        if part is None:
            part = self.peer_parts[(conn.conn_id, peer)] = conn.with_peer(peer, self.options.body_limit)
        return part

    def _take_rows(self, conns: Iterable[Connection]) -> None:
        """The finished rows of these connections' traces, into their tables' columns."""
        for conn in conns:
            if conn.trace is None:
                continue
            rows = conn.trace.take_rows()
            if rows:
                self._tables[conn.trace.table].add(rows, conn.columns())
            self.stats.decode_errors += conn.take_new_parse_errors()

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
                self._closing.append((self.data_ring.added, conn, time.clock_gettime_ns(time.CLOCK_BOOTTIME)))
                del table[key]
        negatives = self.program.bpf[b"not_inet_stream"]
        for key in list(negatives.keys()):
            if not os.path.exists(f"/proc/{key.value >> 32}"):
                del negatives[key]


def _batch(table: str, rows: list[dict]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist(rows, schema=get_schema(table).arrow_schema)


class _TableColumns:
    """The rows of one protocol table decoded since the last push, turned
    into Arrow column by column every ARROW_EVERY_ROWS rows, so that no
    single step of the decoding holds the drains back for long.

    Converting Python values is most of the cost of a row, so what can be is
    converted once: a connection's columns from one value per `add` (each
    row takes its connection's by index), `time_ns` with numpy. Rows come as
    dicts, or as tuples of `row_fields` (see PairedTrace). `between_columns`
    is called after each column converted (the connector offers its CPU)."""

    def __init__(self, table: str, clock: BootClock, row_fields: tuple[str, ...] | None = None,
                 between_columns: Callable[[], None] = lambda: None):
        self.schema = get_schema(table).arrow_schema
        self.common = [name for name in COMMON_COLUMNS if name in self.schema.names]
        self.own = [name for name in self.schema.names if name != "time_" and name not in COMMON_COLUMNS]
        self.row_fields = row_fields
        self.clock = clock
        self.between_columns = between_columns
        self._parts: list[tuple[list, dict]] = []  # rows not yet in Arrow, with their connection's columns
        self._rows = 0
        self._batches: list[pa.RecordBatch] = []

    def add(self, rows: list[dict] | list[tuple], common: dict) -> None:
        """Rows of a trace (their own columns and time_ns) and the columns of their connection."""
        self._parts.append((rows, common))
        self._rows += len(rows)
        if self._rows >= ARROW_EVERY_ROWS:
            self._to_arrow()

    def _to_arrow(self) -> None:
        parts, self._parts, self._rows = self._parts, [], 0
        rows = [row for part_rows, _ in parts for row in part_rows]
        part_of_row = pa.array(np.repeat(np.arange(len(parts)), [len(part_rows) for part_rows, _ in parts]))
        columns = {name: pa.array([common[name] for _, common in parts], self.schema.field(name).type).take(part_of_row)
                   for name in self.common}
        columns.update(self._own_columns(rows))
        columns["time_"] = self.clock.boot_ns_to_epoch_us(np.array(columns.pop("time_ns"), dtype=np.int64))
        arrays = []
        for field in self.schema:
            arrays.append(pa.array(columns[field.name], field.type))
            self.between_columns()
        self._batches.append(pa.RecordBatch.from_arrays(arrays, schema=self.schema))

    def _own_columns(self, rows: list[dict] | list[tuple]) -> dict[str, list]:
        """The values of time_ns and of the table's own columns; a column a
        trace leaves out of its rows is null, as with from_pylist."""
        if self.row_fields is None:
            return {name: list(map(dict.get, rows, repeat(name))) for name in ("time_ns", *self.own)}
        columns = {name: [None] * len(rows) for name in self.own}
        values = zip(*rows) if rows else [()] * len(self.row_fields)
        columns.update(zip(self.row_fields, map(list, values)))
        return columns

    def take_batch(self) -> pa.RecordBatch:
        """Every row added since the last take, as one batch."""
        if self._parts or not self._batches:
            self._to_arrow()
        batches, self._batches = self._batches, []
        return batches[0] if len(batches) == 1 else pa.concat_batches(batches)
