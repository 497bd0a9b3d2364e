"""conn_stats: byte and connection counts per (process, remote endpoint, role).

The kernel counts the bytes of every tracked connection in conn_info_map;
this module groups them. Closed connections leave their final counts in their
group; open ones are read from the map at every push. A group gets a row when
something changed since its previous row, and while it has open connections.
Counters are cumulative while the group is remembered; a group with no open
connection and no change for FORGET_AFTER_S is forgotten (servers see one group
per client port, which would otherwise grow without bound).

A connection older than the collector is adopted with its role unknown; the
role is learned with its protocol, usually from the same first bytes. If
that happens before its group has written a row, the connection moves to
the group of its real role; after, it stays (a cumulative counter never goes
down), so a connection whose protocol took a push period or more to infer
is counted under role "unknown".
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tracedb.connectors.socket_tracer.connection import ROLE_NAMES, Connection
from tracedb.connectors.socket_tracer.events import AF_INET, Protocol

FORGET_AFTER_S = 600

GroupKey = tuple[str, int, str, int, str]  # upid, pid, remote_addr, remote_port, trace_role


@dataclass
class _Group:
    family: int
    protocol: Protocol = Protocol.UNKNOWN
    opened: int = 0
    closed: int = 0
    closed_sent: int = 0
    closed_recv: int = 0
    open_bytes: dict[int, tuple[int, int]] = field(default_factory=dict)  # conn_id -> (sent, recv)
    last_row: tuple | None = None
    last_change_us: int = 0

    def counters(self) -> tuple[int, int, int, int, int]:
        sent = self.closed_sent + sum(s for s, _ in self.open_bytes.values())
        recv = self.closed_recv + sum(r for _, r in self.open_bytes.values())
        return self.opened, self.closed, self.opened - self.closed, sent, recv


class ConnStats:
    def __init__(self) -> None:
        self._groups: dict[GroupKey, _Group] = {}
        self._group_of: dict[int, GroupKey] = {}  # open conn_id -> its group
        self._unpublished: set[int] = set()  # conn_ids opened since the last rows: free to change group

    def opened(self, conn: Connection) -> None:
        self._join(conn, _key(conn), (0, 0))
        self._unpublished.add(conn.conn_id)

    def _join(self, conn: Connection, key: GroupKey, open_bytes: tuple[int, int]) -> None:
        group = self._groups.setdefault(key, _Group(conn.family))
        group.opened += 1
        group.open_bytes[conn.conn_id] = open_bytes
        self._group_of[conn.conn_id] = key

    def protocol_known(self, conn: Connection) -> None:
        """conn's protocol, and with it maybe its role, is known."""
        key = self._group_of.get(conn.conn_id)
        if key is None:
            return
        if key != _key(conn) and conn.conn_id in self._unpublished:
            key = self._move(conn, key)
        self._groups[key].protocol = conn.protocol

    def _move(self, conn: Connection, old_key: GroupKey) -> GroupKey:
        """Take an unpublished connection out of old_key's group into its role's; its new key."""
        old = self._groups[old_key]
        old.opened -= 1
        open_bytes = old.open_bytes.pop(conn.conn_id)
        if not old.opened:
            del self._groups[old_key]
        self._join(conn, _key(conn), open_bytes)
        return _key(conn)

    def update(self, conn_id: int, sent: int, recv: int) -> None:
        key = self._group_of.get(conn_id)
        if key is not None:
            self._groups[key].open_bytes[conn_id] = (sent, recv)

    def closed(self, conn_id: int, sent: int, recv: int) -> None:
        self._unpublished.discard(conn_id)
        key = self._group_of.pop(conn_id, None)
        if key is None:
            return
        group = self._groups[key]
        group.open_bytes.pop(conn_id, None)
        group.closed += 1
        group.closed_sent += sent
        group.closed_recv += recv

    def open_conn_ids(self) -> list[int]:
        return list(self._group_of)

    def take_rows(self, time_us: int) -> list[dict]:
        rows = []
        self._unpublished.clear()
        for key, group in list(self._groups.items()):
            counters = group.counters()
            if counters != group.last_row:
                group.last_change_us = time_us
            if counters != group.last_row or group.open_bytes:
                rows.append(self._row(key, group, counters, time_us))
                group.last_row = counters
            elif time_us - group.last_change_us > FORGET_AFTER_S * 1_000_000:
                del self._groups[key]
        return rows

    @staticmethod
    def _row(key: GroupKey, group: _Group, counters: tuple, time_us: int) -> dict:
        upid, pid, remote_addr, remote_port, role = key
        opened, closed, active, sent, recv = counters
        return {
            "time_": time_us,
            "upid": upid,
            "pid": pid,
            "remote_addr": remote_addr,
            "remote_port": remote_port,
            "trace_role": role,
            "addr_family": "ipv4" if group.family == AF_INET else "ipv6",
            "protocol": group.protocol.name.lower(),
            "conn_open": opened,
            "conn_close": closed,
            "conn_active": active,
            "bytes_sent": sent,
            "bytes_recv": recv,
        }


def _key(conn: Connection) -> GroupKey:
    return conn.upid, conn.pid, conn.remote.addr, conn.remote.port, ROLE_NAMES[conn.role]
