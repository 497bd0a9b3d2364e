"""A connection's two streams through the HTTP trace, as the connector feeds them."""

from tracedb.connectors.socket_tracer.connection import Connection
from tracedb.connectors.socket_tracer.events import Direction, Endpoint, Protocol, Role

REQUEST = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
HEAD = b"HEAD /b HTTP/1.1\r\nHost: h\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
HEAD_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"


def rows(conn: Connection) -> list[dict]:
    return [dict(zip(conn.trace.row_fields, row, strict=True)) for row in conn.trace.take_rows()]


def server_connection() -> Connection:
    conn = Connection(
        conn_id=9, upid="5:50", pid=5, family=2,
        local=Endpoint("127.0.0.1", 80), remote=Endpoint("127.0.0.1", 40000), role=Role.SERVER,
    )
    conn.learn_protocol(Protocol.HTTP, Role.SERVER, body_limit=3)
    return conn


def test_requests_and_responses_pair_in_time_order_across_directions():
    conn = server_connection()
    recv, send = conn.streams[Direction.RECV], conn.streams[Direction.SEND]
    recv.add(0, len(REQUEST), REQUEST, 100)
    send.add(0, len(RESPONSE), RESPONSE, 150)
    recv.add(len(REQUEST), len(HEAD), HEAD, 200)  # HEAD: its response has no body
    send.add(len(RESPONSE), len(HEAD_RESPONSE), HEAD_RESPONSE, 250)
    conn.feed_trace()
    taken = rows(conn)
    assert [(r["req_method"], r["req_path"], r["resp_status"], r["resp_body"], r["resp_body_size"]) for r in taken] == [
        ("GET", "/a", 200, "hel", 5),
        ("HEAD", "/b", 200, "", 0),
    ]
    assert [(r["time_ns"], r["latency"]) for r in taken] == [(100, 50), (200, 50)]
    assert conn.columns()["trace_role"] == "server"


def test_uncaptured_body_bytes_are_counted_not_lost():
    conn = server_connection()
    conn.streams[Direction.RECV].add(0, len(REQUEST), REQUEST, 1)
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"
    conn.streams[Direction.SEND].add(0, len(head), head, 2)
    conn.streams[Direction.SEND].add(len(head), 100000, b"", 3)  # sendfile(): counted, not copied
    conn.feed_trace()
    (row,) = rows(conn)
    assert (row["resp_body_size"], row["latency"]) == (100000, 2)
    assert conn.take_new_parse_errors() == 0


def test_malformed_request_is_counted_and_the_next_one_parses():
    conn = server_connection()
    junk = b"GET\x00\x01 garbage\r\n\r\n"
    conn.streams[Direction.RECV].add(0, len(junk) + len(REQUEST), junk + REQUEST, 1)
    conn.streams[Direction.SEND].add(0, len(RESPONSE), RESPONSE, 2)
    conn.feed_trace()
    assert [r["req_path"] for r in rows(conn)] == ["/a"]
    assert conn.take_new_parse_errors() == 1
    assert conn.take_new_parse_errors() == 0, "each error is reported once"


def test_connection_columns_follow_the_role_learned():
    conn = Connection(conn_id=1, upid="1:2", pid=1, family=2, local=Endpoint("127.0.0.1", 80),
                      remote=Endpoint("127.0.0.1", 5000), role=Role.UNKNOWN)
    assert conn.columns()["trace_role"] == "unknown"
    conn.learn_protocol(Protocol.HTTP, Role.SERVER, body_limit=16)
    assert conn.columns()["trace_role"] == "server"
    part = conn.with_peer(Endpoint("127.0.0.1", 6000), body_limit=16)
    assert part.columns()["remote_port"] == 6000 and conn.columns()["remote_port"] == 5000
