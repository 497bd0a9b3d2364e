from tracedb.connectors.socket_tracer.conn_stats import FORGET_AFTER_S, ConnStats
from tracedb.connectors.socket_tracer.connection import Connection
from tracedb.connectors.socket_tracer.events import Endpoint, Protocol, Role

COUNTERS = ("conn_open", "conn_close", "conn_active", "bytes_sent", "bytes_recv")


def conn(conn_id: int, remote_port: int = 80) -> Connection:
    return Connection(
        conn_id=conn_id, upid="7:100", pid=7, family=2,
        local=Endpoint("127.0.0.1", 40000 + conn_id), remote=Endpoint("127.0.0.1", remote_port), role=Role.CLIENT,
    )


def counters(rows):
    return [tuple(r[c] for c in COUNTERS) for r in rows]


def test_connections_to_one_endpoint_share_a_group_with_cumulative_counts():
    stats = ConnStats()
    a, b = conn(1), conn(2)
    stats.opened(a)
    stats.opened(b)
    stats.update(1, 100, 10)
    stats.update(2, 5, 50)
    assert counters(stats.take_rows(1)) == [(2, 0, 2, 105, 60)]
    stats.closed(1, 120, 10)
    stats.update(2, 6, 60)
    assert counters(stats.take_rows(2)) == [(2, 1, 1, 126, 70)]
    stats.closed(2, 6, 60)
    assert counters(stats.take_rows(3)) == [(2, 2, 0, 126, 70)]
    assert stats.take_rows(4) == [], "an idle group with nothing open writes no rows"
    stats.opened(conn(3))
    assert counters(stats.take_rows(5)) == [(3, 2, 1, 126, 70)], "counts stay cumulative"


def test_rows_carry_the_group_and_protocol():
    stats = ConnStats()
    c = conn(1, remote_port=5432)
    stats.opened(c)
    c.protocol = Protocol.HTTP
    stats.protocol_known(c)
    (row,) = stats.take_rows(1)
    assert (row["remote_port"], row["trace_role"], row["protocol"], row["addr_family"]) == (5432, "client", "http", "ipv4")


def test_idle_groups_are_forgotten():
    stats = ConnStats()
    stats.opened(conn(1))
    stats.closed(1, 1, 1)
    assert len(stats.take_rows(0)) == 1
    stats.take_rows(FORGET_AFTER_S * 1_000_000 + 1)
    stats.opened(conn(2))
    assert counters(stats.take_rows(FORGET_AFTER_S * 2_000_000)) == [(1, 0, 1, 0, 0)]


def adopted(conn_id: int) -> Connection:
    c = conn(conn_id)
    c.role = Role.UNKNOWN
    return c


def test_an_adopted_connection_moves_to_its_role_learned_before_the_next_rows():
    stats = ConnStats()
    c = adopted(1)
    stats.opened(c)
    stats.update(1, 30, 40)
    c.protocol, c.role = Protocol.HTTP, Role.SERVER
    stats.protocol_known(c)
    (row,) = stats.take_rows(1)
    assert (row["trace_role"], row["protocol"]) == ("server", "http")
    assert counters([row]) == [(1, 0, 1, 30, 40)], "its bytes move with it; no empty 'unknown' group is left"
    stats.closed(1, 35, 45)
    assert counters(stats.take_rows(2)) == [(1, 1, 0, 35, 45)]


def test_a_role_learned_after_the_connection_was_published_leaves_it_where_it_was():
    stats = ConnStats()
    c = adopted(1)
    stats.opened(c)
    assert [r["trace_role"] for r in stats.take_rows(1)] == ["unknown"]
    c.protocol, c.role = Protocol.HTTP, Role.SERVER
    stats.protocol_known(c)
    (row,) = stats.take_rows(2)
    assert (row["trace_role"], row["protocol"], row["conn_open"]) == ("unknown", "http", 1), \
        "cumulative counters of a published group never go down"


def test_moving_keeps_the_other_connections_of_the_group():
    stats = ConnStats()
    stays, moves = adopted(1), adopted(2)
    stats.opened(stays)
    stats.opened(moves)
    moves.protocol, moves.role = Protocol.HTTP, Role.CLIENT
    stats.protocol_known(moves)
    rows = {r["trace_role"]: r for r in stats.take_rows(1)}
    assert counters([rows["unknown"], rows["client"]]) == [(1, 0, 1, 0, 0), (1, 0, 1, 0, 0)]
