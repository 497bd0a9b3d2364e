import struct

import pytest

from tracedb.protocols.mysql import (
    CLIENT_DEPRECATE_EOF,
    CLIENT_PROTOCOL_41,
    CLIENT_QUERY_ATTRIBUTES,
    CLIENT_SSL,
    MAX_FRAGMENT,
    PacketReader,
    MysqlTrace,
    render_statement,
)
from tracedb.schema import builtin_schemas

# Builders. A conversation is a list of turns: (request_side, bytes), in time order.

LONGLONG, LONG, TINY, DOUBLE, FLOAT, DATE, DATETIME, TIME, VAR_STRING, BLOB, NEWDECIMAL = (
    0x08, 0x03, 0x01, 0x05, 0x04, 0x0A, 0x0C, 0x0B, 0xFD, 0xFC, 0xF6,
)
# PROTOCOL_41, SECURE_CONNECTION, TRANSACTIONS, MULTI_RESULTS, PLUGIN_AUTH
BASE_CAPS = CLIENT_PROTOCOL_41 | 0x8000 | 0x2000 | 1 << 17 | 1 << 19
MORE_RESULTS = 0x0008
AUTOCOMMIT = 0x0002


def lenenc(n: int) -> bytes:
    if n < 0xFB:
        return bytes([n])
    if n < 1 << 16:
        return b"\xfc" + n.to_bytes(2, "little")
    if n < 1 << 24:
        return b"\xfd" + n.to_bytes(3, "little")
    return b"\xfe" + n.to_bytes(8, "little")


def lenenc_str(raw: bytes) -> bytes:
    return lenenc(len(raw)) + raw


def packet(seq: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "little") + bytes([seq & 0xFF]) + payload


def packets(first_seq: int, payloads: list[bytes]) -> bytes:
    return b"".join(packet(first_seq + i, p) for i, p in enumerate(payloads))


def greeting(caps: int) -> bytes:
    return (
        b"\x0a8.0.36\x00" + (7).to_bytes(4, "little") + b"abcdefgh\x00" + (caps & 0xFFFF).to_bytes(2, "little")
        + b"\xff" + AUTOCOMMIT.to_bytes(2, "little") + (caps >> 16).to_bytes(2, "little") + bytes([21])
        + bytes(10) + b"ijklmnopqrst\x00" + b"caching_sha2_password\x00"
    )


def handshake_response(caps: int) -> bytes:
    return (
        caps.to_bytes(4, "little") + (1 << 24).to_bytes(4, "little") + b"\xff" + bytes(23)
        + b"root\x00" + lenenc_str(b"x" * 32) + b"caching_sha2_password\x00"
    )


def ssl_request(caps: int) -> bytes:
    return (caps | CLIENT_SSL).to_bytes(4, "little") + (1 << 24).to_bytes(4, "little") + b"\xff" + bytes(23)


def ok(affected: int = 0, insert_id: int = 0, status: int = AUTOCOMMIT, warnings: int = 0, info: bytes = b"",
       header: int = 0x00) -> bytes:
    fixed = bytes([header]) + lenenc(affected) + lenenc(insert_id) + struct.pack("<HH", status, warnings)
    return fixed + lenenc_str(info) if info else fixed


def eof(status: int = AUTOCOMMIT) -> bytes:
    return b"\xfe" + struct.pack("<HH", 0, status)


def err(code: int, state: bytes, message: bytes) -> bytes:
    return b"\xff" + code.to_bytes(2, "little") + b"#" + state + message


def column(name: bytes, column_type: int = LONGLONG, flags: int = 0) -> bytes:
    return (
        b"".join(map(lenenc_str, (b"def", b"test", b"t", b"t", name, name)))
        + b"\x0c" + (63).to_bytes(2, "little") + (20).to_bytes(4, "little")
        + bytes([column_type]) + flags.to_bytes(2, "little") + b"\x00\x00\x00"
    )


def text_row(*values: bytes | None) -> bytes:
    return b"".join(b"\xfb" if v is None else lenenc_str(v) for v in values)


def result_set(columns: list[bytes], rows: list[bytes], deprecate_eof: bool, status: int = AUTOCOMMIT) -> list[bytes]:
    """The payloads of a result set, from the column count to the terminator."""
    head = [lenenc(len(columns)), *columns] + ([] if deprecate_eof else [eof()])
    return head + rows + [ok(status=status, header=0xFE) if deprecate_eof else eof(status)]


def command(code: int, body: bytes = b"") -> bytes:
    return packet(0, bytes([code]) + body)


def query(sql: bytes) -> bytes:
    return command(0x03, sql)


def prepare_ok(statement_id: int, columns: int, params: int) -> bytes:
    return b"\x00" + struct.pack("<IHHBH", statement_id, columns, params, 0, 0)


def prepare_response(statement_id: int, params: list[bytes], columns: list[bytes], deprecate_eof: bool) -> bytes:
    payloads = [prepare_ok(statement_id, len(columns), len(params))]
    for block in (params, columns):
        if block:
            payloads += block + ([] if deprecate_eof else [eof()])
    return packets(1, payloads)


def execute(statement_id: int, values: list[tuple[int, bytes] | None], bind: bool = True, flags: int = 0,
            attributes: bool = False) -> bytes:
    """COM_STMT_EXECUTE: values as (type, encoded value), None for NULL."""
    body = struct.pack("<IBI", statement_id, flags, 1)
    if attributes:
        body += lenenc(len(values))
    if values:
        nulls = bytearray((len(values) + 7) // 8)
        for i, value in enumerate(values):
            if value is None:
                nulls[i // 8] |= 1 << i % 8
        body += bytes(nulls) + bytes([bind])
        if bind:
            for value in values:
                body += bytes([value[0] if value else 0x06, 0]) + (b"\x00" if attributes else b"")
        body += b"".join(value[1] for value in values if value)
    return command(0x17, body)


def longlong(n: int) -> tuple[int, bytes]:
    return LONGLONG, n.to_bytes(8, "little", signed=True)


def string(text: bytes) -> tuple[int, bytes]:
    return VAR_STRING, lenenc_str(text)


def handshake(caps: int) -> list[tuple[bool, bytes]]:
    """Greeting, response, an auth switch round and the OK."""
    return [
        (False, packet(0, greeting(caps | CLIENT_DEPRECATE_EOF | CLIENT_QUERY_ATTRIBUTES))),
        (True, packet(1, handshake_response(caps))),
        (False, packet(2, b"\xfemysql_native_password\x00" + b"s" * 20 + b"\x00")),
        (True, packet(3, b"p" * 20)),
        (False, packet(4, ok())),
    ]


def session_turns(deprecate_eof: bool) -> list[tuple[bool, bytes]]:
    """A whole connection: handshake, then every command the table shows."""
    caps = BASE_CAPS | (CLIENT_DEPRECATE_EOF if deprecate_eof else 0)
    select_one = packets(1, result_set([column(b"1")], [text_row(b"1")], deprecate_eof))
    param_defs = [column(b"?", VAR_STRING)] * 2
    return handshake(caps) + [
        (True, query(b"select 1")),
        (False, select_one),
        (True, query(b"insert into t (name) values ('a')")),
        (False, packet(1, ok(affected=1, insert_id=5))),
        (True, query(b"selec 1")),
        (False, packet(1, err(1064, b"42000", b"You have an error in your SQL syntax"))),
        (True, command(0x16, b"insert into t (id, name) values (?, ?)")),
        (False, prepare_response(1, param_defs, [], deprecate_eof)),
        (True, execute(1, [longlong(42), string(b"it's")])),
        (False, packet(1, ok(affected=1, insert_id=42))),
        (True, command(0x19, struct.pack("<I", 1))),
        (True, command(0x0E)),
        (False, packet(1, ok())),
        (True, command(0x02, b"shop")),
        (False, packet(1, ok())),
        (True, command(0x01)),
    ]


EXPECTED_SESSION = [
    ("Query", "select 1", "RESULTSET", "1 row\n1\n1"),
    ("Query", "insert into t (name) values ('a')", "OK", "affected_rows=1 last_insert_id=5"),
    ("Query", "selec 1", "ERR", "1064 (42000): You have an error in your SQL syntax"),
    ("StmtPrepare", "insert into t (id, name) values (?, ?)", "OK", "statement_id=1 params=2 columns=0"),
    ("StmtExecute", "insert into t (id, name) values (42, 'it\\'s')", "OK", "affected_rows=1 last_insert_id=42"),
    ("StmtClose", "insert into t (id, name) values (?, ?)", "NONE", ""),
    ("Ping", "", "OK", "affected_rows=0 last_insert_id=0"),
    ("InitDB", "shop", "OK", "affected_rows=0 last_insert_id=0"),
    ("Quit", "", "NONE", ""),
]


def run(
    turns: list[tuple[bool, bytes]], trace: MysqlTrace | None = None, body_limit: int = 1024, first: int = 0
) -> MysqlTrace:
    """Feed the turns, turn i at time 10 * (first + i + 1)."""
    trace = trace or MysqlTrace(body_limit)
    for i, (request_side, data) in enumerate(turns, first + 1):
        trace.on_bytes(request_side, data, 10 * i)
    return trace


def summary(rows: list[dict]) -> list[tuple[str, str, str, str]]:
    return [(r["req_cmd"], r["req_body"], r["resp_status"], r["resp_body"]) for r in rows]


# A whole connection


@pytest.mark.parametrize("deprecate_eof", [True, False], ids=["deprecate_eof", "eof"])
def test_whole_connection(deprecate_eof):
    trace = run(session_turns(deprecate_eof))
    rows = trace.take_rows()
    assert summary(rows) == EXPECTED_SESSION
    assert trace.session.deprecate_eof is deprecate_eof
    assert trace.parse_errors == trace.session.dropped_commands == 0
    first = rows[0]
    assert set(first) == {"time_ns", "req_cmd", "req_body", "resp_status", "resp_body", "latency"}
    assert (first["time_ns"], first["latency"]) == (60, 10)  # turns 6 and 7
    assert [r["latency"] for r in rows if r["resp_status"] == "NONE"] == [0, 0]


@pytest.mark.parametrize("deprecate_eof", [True, False], ids=["deprecate_eof", "eof"])
def test_every_turn_split_at_every_byte_boundary(deprecate_eof):
    turns = session_turns(deprecate_eof)
    expected = run(turns).take_rows()
    for index, (request_side, data) in enumerate(turns):
        for cut in range(len(data) + 1):
            trace = run(turns[:index])
            trace.on_bytes(request_side, data[:cut], 10 * (index + 1))
            trace.on_bytes(request_side, data[cut:], 10 * (index + 1))
            run(turns[index + 1 :], trace, first=index + 1)
            assert trace.take_rows() == expected, (index, cut)
            assert trace.parse_errors == 0, (index, cut)


def test_one_byte_per_feed():
    turns = session_turns(deprecate_eof=False)
    trace = MysqlTrace(1024)
    for i, (request_side, data) in enumerate(turns):
        for byte in data:
            trace.on_bytes(request_side, bytes([byte]), i)
    assert summary(trace.take_rows()) == EXPECTED_SESSION
    assert trace.parse_errors == 0


def test_all_turns_of_a_side_in_one_feed_each():
    # What one flush may hold when the peer is slow to be read: several turns per call.
    turns = session_turns(deprecate_eof=True)
    trace = MysqlTrace(1024)
    for i, (request_side, data) in enumerate(turns):
        trace.on_bytes(request_side, data, i)
    assert summary(trace.take_rows()) == EXPECTED_SESSION


# The handshake


def test_ssl_request_stops_parsing():
    trace = run(
        [
            (False, packet(0, greeting(BASE_CAPS | CLIENT_SSL))),
            (True, packet(1, ssl_request(BASE_CAPS))),
            (True, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),  # a TLS ClientHello
            (False, b"\x16\x03\x03\x00\x7a\x02\x00\x00\x76"),
        ]
    )
    assert trace.session.stopped == "tls"
    assert trace.take_rows() == []
    assert trace.parse_errors == 0


def test_failed_login_gives_no_row():
    turns = [
        (False, packet(0, greeting(BASE_CAPS))),
        (True, packet(1, handshake_response(BASE_CAPS))),
        (False, packet(2, err(1045, b"28000", b"Access denied for user 'root'"))),
    ]
    trace = run(turns)
    assert trace.take_rows() == []
    assert trace.parse_errors == 0


def test_capabilities_are_those_both_sides_have():
    trace = run(handshake(BASE_CAPS | CLIENT_DEPRECATE_EOF)[:2])
    assert trace.session.deprecate_eof is True
    server_without_it = packet(0, greeting(BASE_CAPS))
    trace = run([(False, server_without_it), (True, packet(1, handshake_response(BASE_CAPS | CLIENT_DEPRECATE_EOF)))])
    assert trace.session.deprecate_eof is False


# Joining a connection in its middle


@pytest.mark.parametrize("deprecate_eof", [True, False], ids=["deprecate_eof", "eof"])
def test_deprecate_eof_is_learnt_from_the_first_result_set(deprecate_eof):
    rows = [text_row(b"1", b"a"), text_row(b"2", None)]
    turns = [
        (False, packet(3, text_row(b"tail of a response we joined in"))),
        (True, query(b"select id, name from t")),
        (False, packets(1, result_set([column(b"id"), column(b"name", VAR_STRING)], rows, deprecate_eof))),
        (True, query(b"select 1 from t where false")),
        (False, packets(1, result_set([column(b"1")], [], deprecate_eof))),
    ]
    trace = run(turns)
    assert trace.session.capabilities is None
    assert trace.session.deprecate_eof is deprecate_eof
    assert summary(trace.take_rows()) == [
        ("Query", "select id, name from t", "RESULTSET", "2 rows\nid\tname\n1\ta\n2\tNULL"),
        ("Query", "select 1 from t where false", "RESULTSET", "0 rows\n1"),
    ]
    assert trace.parse_errors == 0


def test_prepare_with_unknown_deprecate_eof_passes_over_a_trailing_eof():
    turns = [
        (True, command(0x16, b"select ? + ?")),
        (False, prepare_response(3, [column(b"?")] * 2, [column(b"x")], deprecate_eof=False)),
        (True, execute(3, [longlong(1), longlong(2)])),
        (False, packets(1, result_set([column(b"x")], [b"\x00\x00" + (3).to_bytes(8, "little")], False))),
    ]
    trace = run(turns)
    assert summary(trace.take_rows()) == [
        ("StmtPrepare", "select ? + ?", "OK", "statement_id=3 params=2 columns=1"),
        ("StmtExecute", "select 1 + 2", "RESULTSET", "1 row\nx\n3"),
    ]
    assert trace.parse_errors == 0


def test_query_attributes_are_read_past_when_negotiated_or_recognised():
    attrs_query = command(0x03, b"\x00\x01select 1")
    one_attribute = command(
        0x03, b"\x01\x01" + b"\x00" + b"\x01" + bytes([VAR_STRING, 0]) + lenenc_str(b"trace") + lenenc_str(b"abc")
        + b"select 2"
    )
    for turns in (handshake(BASE_CAPS | CLIENT_QUERY_ATTRIBUTES), []):
        trace = run(turns + [(True, attrs_query), (False, packet(1, ok())),
                             (True, one_attribute), (False, packet(1, ok()))])
        assert [r["req_body"] for r in trace.take_rows()] == ["select 1", "select 2"]
        assert trace.parse_errors == 0


def test_execute_with_query_attributes_negotiated():
    turns = handshake(BASE_CAPS | CLIENT_QUERY_ATTRIBUTES) + [
        (True, command(0x16, b"select ?")),
        (False, prepare_response(1, [column(b"?")], [], deprecate_eof=False)),
        (True, execute(1, [string(b"x")], flags=0x08, attributes=True)),
        (False, packet(1, ok())),
    ]
    assert [r["req_body"] for r in run(turns).take_rows()] == ["select ?", "select 'x'"]


def test_execute_of_a_statement_prepared_before_tracing():
    trace = run([(True, execute(9, [longlong(1)])), (False, packet(1, ok()))])
    assert [r["req_body"] for r in trace.take_rows()] == ["<statement 9, prepared before tracing began>"]


# Prepared statements


def prepared(text: bytes, params: int, statement_id: int = 1) -> list[tuple[bool, bytes]]:
    return [
        (True, command(0x16, text)),
        (False, prepare_response(statement_id, [column(b"?")] * params, [], deprecate_eof=True)),
    ]


def executed(values: list, bind: bool = True, statement_id: int = 1) -> list[tuple[bool, bytes]]:
    return [(True, execute(statement_id, values, bind)), (False, packet(1, ok()))]


def test_execute_renders_values_of_every_common_type():
    values = [
        (TINY, b"\xff"), (LONG, (-7).to_bytes(4, "little", signed=True)), longlong(2**40),
        (DOUBLE, struct.pack("<d", 2.5)), (FLOAT, struct.pack("<f", 1.1)), string(b"a'b\\c"),
        (BLOB, lenenc_str(b"\xff\x00")), None,
        (DATE, b"\x04" + struct.pack("<HBB", 2024, 2, 29)),
        (DATETIME, b"\x0b" + struct.pack("<HBBBBBI", 2024, 2, 29, 13, 5, 9, 120)),
        (TIME, b"\x08" + struct.pack("<BIBBB", 1, 1, 2, 3, 4)), (NEWDECIMAL, lenenc_str(b"3.14")),
    ]
    text = b"insert into t values (" + b", ".join([b"?"] * len(values)) + b")"
    trace = run(prepared(text, len(values)) + executed(values), body_limit=4096)
    assert trace.take_rows()[1]["req_body"] == (
        "insert into t values (-1, -7, 1099511627776, 2.5, 1.1, 'a\\'b\\\\c', X'ff00', NULL, '2024-02-29',"
        " '2024-02-29 13:05:09.000120', '-26:03:04', 3.14)"
    )


def test_types_bound_once_serve_later_executions():
    turns = prepared(b"select ?, ?", 2) + executed([longlong(1), string(b"a")]) + executed(
        [longlong(2), string(b"b")], bind=False
    )
    assert [r["req_body"] for r in run(turns).take_rows()][1:] == ["select 1, 'a'", "select 2, 'b'"]


def test_long_data_parameter():
    # A parameter sent with StmtSendLongData has no value in the execution.
    execution = command(
        0x17, struct.pack("<IBI", 1, 0, 1) + b"\x00\x01" + bytes([LONGLONG, 0, BLOB, 0]) + (5).to_bytes(8, "little")
    )
    turns = prepared(b"insert into t values (?, ?)", 2) + [
        (True, command(0x18, struct.pack("<IH", 1, 1) + b"big blob")),
        (True, execution),
        (False, packet(1, ok())),
    ]
    assert summary(run(turns).take_rows())[1:] == [
        ("StmtExecute", "insert into t values (5, <long data>)", "OK", "affected_rows=0 last_insert_id=0")
    ]


def test_reset_connection_forgets_prepared_statements():
    turns = prepared(b"select ?", 1) + [(True, command(0x1F)), (False, packet(1, ok()))] + executed([longlong(1)])
    assert [r["req_body"] for r in run(turns).take_rows()][2:] == ["<statement 1, prepared before tracing began>"]


def test_placeholders_in_strings_and_comments_are_not_parameters():
    text = "select '?', \"?\", `?`, ? /* ? */ -- ?\n, ? # ?\n, 'it''s ?', ?"
    assert render_statement(text, ["1", "2"]) == "select '?', \"?\", `?`, 1 /* ? */ -- ?\n, 2 # ?\n, 'it''s ?', ?"


def test_binary_result_set_rows():
    turns = [
        (True, command(0x16, b"select id, name, score from t")),
        (False, prepare_response(2, [], [column(b"id"), column(b"name", VAR_STRING), column(b"score", DOUBLE)], True)),
        (True, execute(2, [])),
        (False, packets(1, result_set(
            [column(b"id"), column(b"name", VAR_STRING), column(b"score", DOUBLE)],
            [b"\x00\x00" + (7).to_bytes(8, "little") + lenenc_str(b"tab\there") + struct.pack("<d", 0.5),
             b"\x00\x10" + (8).to_bytes(8, "little") + lenenc_str(b"x")],  # score NULL: bit 2 + 2
            deprecate_eof=True,
        ))),
    ]
    rows = run(turns).take_rows()
    assert rows[1]["resp_body"] == "2 rows\nid\tname\tscore\n7\ttab\\there\t0.5\n8\tx\tNULL"


# Result sets


def test_multiple_result_sets_and_final_ok():
    first = result_set([column(b"a")], [text_row(b"1")], True, status=AUTOCOMMIT | MORE_RESULTS)
    second = result_set([column(b"b")], [text_row(b"2"), text_row(b"3")], True, status=AUTOCOMMIT | MORE_RESULTS)
    trace = run([(True, query(b"call p()")), (False, packets(1, first + second + [ok(affected=0)]))])
    (row,) = trace.take_rows()
    assert (row["resp_status"], row["resp_body"]) == (
        "RESULTSET", "1 row\na\n1\n2 rows\nb\n2\n3\naffected_rows=0 last_insert_id=0"
    )


def test_error_after_a_result_set():
    first = result_set([column(b"a")], [text_row(b"1")], True, status=AUTOCOMMIT | MORE_RESULTS)
    trace = run([(True, query(b"select 1; select x")),
                 (False, packets(1, first + [err(1054, b"42S22", b"Unknown column 'x'")]))])
    (row,) = trace.take_rows()
    assert (row["resp_status"], row["resp_body"]) == ("ERR", "1 row\na\n1\n1054 (42S22): Unknown column 'x'")


def test_rows_shown_up_to_the_body_limit_and_all_counted():
    rows = [text_row(b"%04d" % i) for i in range(1000)]
    trace = run([(True, query(b"select n from t")), (False, packets(1, result_set([column(b"n")], rows, True)))],
                body_limit=20)
    (row,) = trace.take_rows()
    assert row["resp_body"] == "1000 rows\nn\n0000\n0001\n0002"


def test_ok_with_warnings_and_info():
    trace = run([(True, query(b"update t set a = 1")),
                 (False, packet(1, ok(affected=3, warnings=1, info=b"Rows matched: 3  Changed: 3  Warnings: 1")))])
    assert trace.take_rows()[0]["resp_body"] == (
        'affected_rows=3 last_insert_id=0 warnings=1 info="Rows matched: 3  Changed: 3  Warnings: 1"'
    )


def test_field_list_and_statistics():
    turns = [
        (True, command(0x04, b"t\x00")),
        (False, packets(1, [column(b"id"), column(b"name"), eof()])),
        (True, command(0x09)),
        (False, packet(1, b"Uptime: 10  Threads: 1")),
    ]
    assert summary(run(turns).take_rows()) == [
        ("FieldList", "t", "OK", "2 columns\nid\tname"),
        ("Statistics", "", "OK", "Uptime: 10  Threads: 1"),
    ]


def test_long_request_is_cut_to_the_body_limit():
    trace = run([(True, query(b"select '" + b"x" * 100 + b"'")), (False, packet(1, ok()))], body_limit=10)
    assert trace.take_rows()[0]["req_body"] == "select 'xx..."


# Framing, gaps and errors


def test_gap_inside_a_packet_drops_its_command_and_keeps_the_framing():
    insert = query(b"insert into t values (" + b"1, " * 100 + b"1)")
    trace = MysqlTrace(1024)
    trace.on_bytes(True, insert[:50], 1)
    trace.on_gap(True, len(insert) - 60, 1)
    trace.on_bytes(True, insert[-10:], 1)
    trace.on_bytes(False, packet(1, ok(affected=1)), 2)
    run([(True, query(b"select 1")), (False, packets(1, result_set([column(b"1")], [text_row(b"1")], True)))], trace)
    assert [r["req_body"] for r in trace.take_rows()] == ["select 1"]
    assert trace.requests.skipped_bytes == len(insert) - 60
    assert (trace.parse_errors, trace.session.dropped_commands) == (0, 1)


def test_gap_inside_a_response_drops_its_command():
    response = packets(1, result_set([column(b"n")], [text_row(b"%d" % i) for i in range(50)], True))
    trace = run([(True, query(b"select n from t"))])
    trace.on_bytes(False, response[:100], 20)
    trace.on_gap(False, 50, 20)
    trace.on_bytes(False, response[150:], 20)
    run([(True, query(b"select 2")), (False, packets(1, result_set([column(b"2")], [text_row(b"2")], True)))], trace)
    assert [r["req_body"] for r in trace.take_rows()] == ["select 2"]
    assert trace.session.dropped_commands == 1


def test_framing_lost_resumes_at_the_next_turn():
    trace = run([(True, query(b"select 1"))])
    trace.on_gap(False, 37, 15)  # the whole response, framing and all
    assert trace.parse_errors == 1
    run([(True, query(b"select 2")), (False, packets(1, result_set([column(b"2")], [text_row(b"2")], True)))], trace)
    assert summary(trace.take_rows()) == [("Query", "select 2", "RESULTSET", "1 row\n2\n2")]
    assert (trace.parse_errors, trace.session.dropped_commands) == (1, 1)


def test_framing_lost_on_the_request_side():
    trace = MysqlTrace(1024)
    trace.on_bytes(True, query(b"select 1")[:2], 1)  # inside the header
    trace.on_gap(True, 20, 1)
    trace.on_bytes(True, b"garbage after the gap", 2)
    trace.on_bytes(False, packets(1, result_set([column(b"1")], [text_row(b"1")], True)), 3)
    run([(True, query(b"select 2")), (False, packet(1, ok()))], trace)
    assert [r["req_body"] for r in trace.take_rows()] == ["select 2"]
    assert trace.parse_errors == 1


def test_restart_on_a_wrong_sequence_id_waits_for_the_turn_after():
    reader = PacketReader(restart_seq=0)
    reader.gap(5)
    reader.restart()
    assert reader.feed(packet(3, b"file data"), 1) == []
    assert (reader.parse_errors, reader.framing_lost) == (2, True)
    reader.restart()
    (only,) = reader.feed(query(b"select 1"), 2)
    assert (only.seq, only.payload) == (0, b"\x03select 1")


def test_response_sequence_out_of_step_is_an_error():
    trace = run([(True, query(b"select 1")), (False, packet(2, ok())),
                 (True, query(b"select 2")), (False, packet(1, ok()))])
    assert [r["req_body"] for r in trace.take_rows()] == ["select 2"]
    assert trace.parse_errors == 1


def test_response_without_a_command_is_unmatched():
    trace = run([(True, query(b"select 1")), (False, packet(1, ok())), (False, packet(1, ok()))])
    assert len(trace.take_rows()) == 1
    assert trace.session.unmatched_responses == trace.parse_errors == 1


def test_unsupported_command_gives_no_row_and_its_response_is_passed_over():
    trace = run([(True, command(0x1C, struct.pack("<II", 1, 10))),  # StmtFetch
                 (False, packets(1, [b"\x00\x00" + bytes(8), eof()])),
                 (True, command(0x0E)), (False, packet(1, ok()))])
    assert [r["req_cmd"] for r in trace.take_rows()] == ["Ping"]
    assert (trace.parse_errors, trace.session.unsupported_commands) == (0, 1)


def test_close_drops_a_command_without_its_response():
    trace = run([(True, query(b"select sleep(100)"))])
    trace.on_close(99)
    assert trace.take_rows() == []
    assert trace.session.dropped_commands == 1


def test_payload_of_16_mib_or_more_spans_fragments():
    sql = b"select '" + b"y" * (MAX_FRAGMENT + 100) + b"'"
    payload = b"\x03" + sql
    stream = packet(0, payload[:MAX_FRAGMENT]) + packet(1, payload[MAX_FRAGMENT:])
    trace = MysqlTrace(16)
    for at in range(0, len(stream), 1 << 20):
        trace.on_bytes(True, stream[at : at + (1 << 20)], 1)
    trace.on_bytes(False, packet(2, ok()), 2)
    (row,) = trace.take_rows()
    assert row["req_body"] == "select 'yyyyyyyy..."
    assert trace.parse_errors == 0


def test_exact_16_mib_payload_ends_with_an_empty_fragment():
    reader = PacketReader(restart_seq=0)
    (pkt,) = reader.feed(packet(0, bytes(MAX_FRAGMENT)) + packet(1, b""), 1)
    assert (pkt.size, pkt.seq, pkt.last_seq, pkt.cut) == (MAX_FRAGMENT, 0, 1, True)


# Schema


def test_mysql_events_schema_has_the_common_block_then_the_mysql_columns():
    mysql, http = builtin_schemas()["mysql_events"], builtin_schemas()["http_events"]
    common = http.column_names[: http.column_names.index("conn_id") + 1]
    assert mysql.column_names == common + ["req_cmd", "req_body", "resp_status", "resp_body", "latency"]
    assert mysql.columns[: len(common)] == http.columns[: len(common)]
