"""PostgreSQL protocol v3: framing, pairing, rows. The bytes are built here,
message by message, as psql, pgbench, psycopg and asyncpg send them and as
PostgreSQL 15 answers."""

import dataclasses
import random
import struct

import pytest

from tracedb.connectors.socket_tracer.connection import Connection
from tracedb.connectors.socket_tracer.events import Direction, Endpoint, Role
from tracedb.protocols.pgsql import (
    INCOMPLETE,
    MAX_KEPT,
    MAX_PENDING,
    MAX_STATEMENTS,
    PgMessage,
    PgsqlParser,
    PgsqlStitcher,
    PgsqlTrace,
    render_error,
    sql_literal,
)
from tracedb.schema import builtin_schemas

# Builders


def int16(value: int) -> bytes:
    return struct.pack(">h", value)


def int32(value: int) -> bytes:
    return struct.pack(">i", value)


def uint32(value: int) -> bytes:
    return struct.pack(">I", value)


def cstring(text: str) -> bytes:
    return text.encode() + b"\x00"


def message(tag: str, payload: bytes = b"") -> bytes:
    return tag.encode() + int32(len(payload) + 4) + payload


def untagged(code: int, payload: bytes = b"") -> bytes:
    return int32(len(payload) + 8) + int32(code) + payload


def values(items) -> bytes:
    """int16 count, then each value as int32 length (-1: NULL) and bytes."""
    out = int16(len(items))
    for item in items:
        out += int32(-1) if item is None else int32(len(item)) + item
    return out


# What a client sends


def startup(**params: str) -> bytes:
    return untagged(196608, b"".join(cstring(k) + cstring(v) for k, v in params.items()) + b"\x00")


SSL_REQUEST = untagged(80877103)
GSSENC_REQUEST = untagged(80877104)
CANCEL = untagged(80877102, int32(28798) + int32(0x61A7CF6A))
SYNC = message("S")
FLUSH = message("H")
TERMINATE = message("X")


def query(sql: str) -> bytes:
    return message("Q", cstring(sql))


def parse(sql: str, name: str = "", oids: tuple[int, ...] = ()) -> bytes:
    return message("P", cstring(name) + cstring(sql) + int16(len(oids)) + b"".join(uint32(o) for o in oids))


def format_codes(codes) -> bytes:
    return int16(len(codes)) + b"".join(int16(c) for c in codes)


def bind(params=(), portal: str = "", statement: str = "", formats=(), result_formats=()) -> bytes:
    names = cstring(portal) + cstring(statement)
    return message("B", names + format_codes(formats) + values(params) + format_codes(result_formats))


def describe(kind: str = "P", name: str = "") -> bytes:
    return message("D", kind.encode() + cstring(name))


def execute(portal: str = "", max_rows: int = 0) -> bytes:
    return message("E", cstring(portal) + int32(max_rows))


def close(kind: str, name: str) -> bytes:
    return message("C", kind.encode() + cstring(name))


# What the server answers

INT4, INT8, TEXT, BOOL, UUID, TIMESTAMPTZ = 23, 20, 25, 16, 2950, 1184
AUTH_OK = message("R", int32(0))
PARSE_COMPLETE = message("1")
BIND_COMPLETE = message("2")
CLOSE_COMPLETE = message("3")
NO_DATA = message("n")
EMPTY_QUERY = message("I")
SUSPENDED = message("s")


def parameter_status(name: str, value: str) -> bytes:
    return message("S", cstring(name) + cstring(value))


def ready(status: str = "I") -> bytes:
    return message("Z", status.encode())


def row_description(*columns: tuple[str, int]) -> bytes:
    fields = b"".join(
        cstring(name) + uint32(0) + int16(0) + uint32(oid) + int16(-1) + int32(-1) + int16(0) for name, oid in columns
    )
    return message("T", int16(len(columns)) + fields)


def data_row(*items) -> bytes:
    return message("D", values(items))


def complete(tag: str) -> bytes:
    return message("C", cstring(tag))


def error(code: str, text: str, severity: str = "ERROR", tag: str = "E", **more: str) -> bytes:
    fields = {"S": severity, "V": severity, "C": code, "M": text, **more, "F": "parse_relation.c", "L": "1392"}
    return message(tag, b"".join(k.encode() + cstring(v) for k, v in fields.items()) + b"\x00")


def parameter_description(*oids: int) -> bytes:
    return message("t", int16(len(oids)) + b"".join(uint32(o) for o in oids))


# Exchanges: (what the client sends, what the server answers), in turn

PSQL_STARTUP = startup(user="postgres", database="postgres", application_name="psql")
SERVER_HELLO = (
    AUTH_OK
    + parameter_status("application_name", "psql")
    + parameter_status("client_encoding", "UTF8")
    + parameter_status("server_version", "15.18 (Debian 15.18-0+deb12u1)")
    + parameter_status("TimeZone", "Etc/UTC")
    + message("K", int32(29054) + int32(0x61A7CF6A))
    + ready()
)
CONNECT = [(SSL_REQUEST, b"N"), (PSQL_STARTUP, SERVER_HELLO)]
SELECT_1 = (query("select 1"), row_description(("?column?", INT4)) + data_row(b"1") + complete("SELECT 1") + ready())
NOPE = (
    query("select * from nope"),
    error("42P01", 'relation "nope" does not exist', P="15", R="parserOpenTable") + ready(),
)
SCRIPT = (
    query("create table t (a int, b text); insert into t values (1, 'x'), (2, NULL); select a, b from t; drop table t"),
    complete("CREATE TABLE")
    + complete("INSERT 0 2")
    + row_description(("a", INT4), ("b", TEXT))
    + data_row(b"1", b"x")
    + data_row(b"2", None)
    + complete("SELECT 2")
    + complete("DROP TABLE")
    + ready(),
)
USERS_SQL = "SELECT id, name FROM users WHERE id = $1 AND name = $2"
# psycopg 3: the whole batch in one write, parameters as text with their types.
PSYCOPG = (
    parse(USERS_SQL, oids=(INT8, TEXT)) + bind([b"42", b"alice"]) + describe() + execute() + SYNC,
    PARSE_COMPLETE
    + BIND_COMPLETE
    + row_description(("id", INT8), ("name", TEXT))
    + data_row(b"42", b"alice")
    + complete("SELECT 1")
    + ready(),
)
# asyncpg: prepare and describe the statement once, then bind binary values.
ASYNCPG_PREPARE = (
    parse("SELECT name, active FROM users WHERE id = $1", name="__asyncpg_stmt_1__")
    + describe("S", "__asyncpg_stmt_1__")
    + SYNC,
    PARSE_COMPLETE + parameter_description(INT4) + row_description(("name", TEXT), ("active", BOOL)) + ready(),
)
ASYNCPG_EXECUTE = (
    bind([int32(7)], statement="__asyncpg_stmt_1__", formats=[1], result_formats=[1]) + execute() + SYNC,
    BIND_COMPLETE + data_row(b"bob", b"\x01") + complete("SELECT 1") + ready(),
)
BAD_PARSE = (
    parse("select * from nope where id = $1") + bind([b"1"]) + describe() + execute() + SYNC,
    error("42P01", 'relation "nope" does not exist') + ready(),
)
SESSION = CONNECT + [SELECT_1, NOPE, SCRIPT, PSYCOPG, ASYNCPG_PREPARE, ASYNCPG_EXECUTE, BAD_PARSE, (TERMINATE, b"")]
SESSION_ROWS = [
    ("Query", "select 1", "SELECT 1\n(?column?)\n(1)"),
    ("Query", "select * from nope", 'ERROR 42P01: relation "nope" does not exist'),
    (
        "Query",
        SCRIPT[0][5:-1].decode(),
        "CREATE TABLE\nINSERT 0 2\nSELECT 2\n(a, b)\n(1, 'x')\n(2, NULL)\nDROP TABLE",
    ),
    ("Execute", USERS_SQL + " /* $1 = 42, $2 = 'alice' */", "SELECT 1\n(id, name)\n(42, 'alice')"),
    ("Parse", "SELECT name, active FROM users WHERE id = $1", "ParseComplete, ParameterDescription, RowDescription"),
    ("Execute", "SELECT name, active FROM users WHERE id = $1 /* $1 = 7 */", "SELECT 1\n(name, active)\n('bob', true)"),
    ("Execute", "select * from nope where id = $1 /* $1 = '1' */", 'ERROR 42P01: relation "nope" does not exist'),
]


def whole(data: bytes) -> list[bytes]:
    return [data]


def run(exchanges, chunks=whole, body_limit: int = 1024) -> tuple[list[dict], PgsqlTrace]:
    """Feed the exchanges in turn, requests at 100, 300, ... and answers 100 ns later."""
    trace = PgsqlTrace(body_limit)
    for turn, (request, response) in enumerate(exchanges):
        for piece in chunks(request):
            trace.on_bytes(True, piece, 100 + 200 * turn)
        for piece in chunks(response):
            trace.on_bytes(False, piece, 200 + 200 * turn)
    return trace.take_rows(), trace


def columns(rows: list[dict]) -> list[tuple[str, str, str]]:
    return [(r["req_cmd"], r["req"], r["resp"]) for r in rows]


def parse_all(data: bytes, is_request: bool) -> tuple[list[PgMessage], PgsqlParser]:
    parser = PgsqlParser(is_request)
    return parser.feed(data, 1), parser


def untimed(msg: PgMessage) -> PgMessage:
    return dataclasses.replace(msg, start_ns=0, end_ns=0)


def request_stream(exchanges) -> bytes:
    return b"".join(request for request, _ in exchanges)


def response_stream(exchanges) -> bytes:
    return b"".join(response for _, response in exchanges)


# Framing


def test_client_messages_from_the_first_byte():
    msgs, parser = parse_all(request_stream(SESSION), is_request=True)
    assert [m.tag for m in msgs] == [
        "SSLRequest", "Startup", "Q", "Q", "Q", "P", "B", "D", "E", "S", "P", "D", "S", "B", "E", "S",
        "P", "B", "D", "E", "S", "X",
    ]
    assert msgs[1].payload == b"\x00\x03\x00\x00" + PSQL_STARTUP[8:]
    assert msgs[2].payload == b"select 1\x00"
    assert parser.parse_errors == parser.resyncs == 0 and parser.stopped  # Terminate ends the stream


def test_server_messages():
    parser = PgsqlParser(is_request=False)
    parser.expect_encryption_answer()
    msgs = parser.feed(b"N" + SERVER_HELLO + SELECT_1[1], 1)
    assert [m.tag for m in msgs] == ["EncryptionResponse", "R", "S", "S", "S", "S", "K", "Z", "T", "D", "C", "Z"]
    assert (msgs[0].payload, msgs[-1].payload) == (b"N", b"I")
    assert parser.parse_errors == 0


def test_an_unexpected_encryption_answer_is_skipped_quietly():
    msgs, parser = parse_all(b"N" + SERVER_HELLO, is_request=False)
    assert msgs[0].tag == "R"
    assert parser.parse_errors == 0


@pytest.mark.parametrize("answer", [b"S", b"G"])
def test_accepted_encryption_stops_the_response_parser(answer):
    parser = PgsqlParser(is_request=False)
    parser.expect_encryption_answer()
    assert [m.payload for m in parser.feed(answer + b"\x16\x03\x03\x00\x7a\x02", 1)] == [answer]
    assert parser.stopped and parser.feed(SERVER_HELLO, 2) == []


def test_tls_after_an_ssl_request_stops_the_request_parser():
    msgs, parser = parse_all(SSL_REQUEST + b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + query("x"), True)
    assert [m.tag for m in msgs] == ["SSLRequest"]
    assert parser.stopped and parser.parse_errors == 0


def test_cancel_request_and_gssenc_request():
    msgs, parser = parse_all(GSSENC_REQUEST + SSL_REQUEST + PSQL_STARTUP, True)
    assert [m.tag for m in msgs] == ["GSSENCRequest", "SSLRequest", "Startup"]
    msgs, parser = parse_all(CANCEL, True)
    assert [(m.tag, m.payload[4:]) for m in msgs] == [("CancelRequest", CANCEL[8:])]


SPLIT_STREAMS = {
    "psql requests": (True, request_stream(CONNECT + [SELECT_1, NOPE, SCRIPT])),
    "psql answers": (False, response_stream(CONNECT[1:] + [SELECT_1, NOPE, SCRIPT])),
    "extended requests": (True, request_stream([PSYCOPG, ASYNCPG_PREPARE, ASYNCPG_EXECUTE, BAD_PARSE])),
    "extended answers": (False, response_stream([PSYCOPG, ASYNCPG_PREPARE, ASYNCPG_EXECUTE, BAD_PARSE])),
}


@pytest.mark.parametrize("case", SPLIT_STREAMS)
def test_every_split_point_gives_the_same_messages(case):
    is_request, stream = SPLIT_STREAMS[case]
    whole_msgs, _ = parse_all(stream, is_request)
    for cut in range(len(stream) + 1):
        parser = PgsqlParser(is_request)
        msgs = parser.feed(stream[:cut], 100) + parser.feed(stream[cut:], 200)
        assert [untimed(m) for m in msgs] == [untimed(m) for m in whole_msgs], cut
        assert parser.parse_errors == 0
        at = 0
        for msg in msgs:  # each takes the times of the pieces holding its first and last bytes
            end = at + msg.size + (4 if len(msg.tag) > 1 else 5)  # untagged messages have no type byte
            assert (msg.start_ns, msg.end_ns) == (100 if at < cut else 200, 100 if end <= cut else 200), cut
            at = end


@pytest.mark.parametrize("case", SPLIT_STREAMS)
def test_one_byte_per_feed_gives_the_same_messages(case):
    is_request, stream = SPLIT_STREAMS[case]
    whole_msgs, _ = parse_all(stream, is_request)
    parser = PgsqlParser(is_request)
    msgs = [m for i in range(len(stream)) for m in parser.feed(stream[i : i + 1], i)]
    assert [untimed(m) for m in msgs] == [untimed(m) for m in whole_msgs]
    assert parser.buffered_bytes == 0


def test_timestamps_of_a_message_split_across_feeds():
    parser = PgsqlParser(is_request=False)
    answer = SELECT_1[1]
    assert parser.feed(answer[:3], 10) == []
    assert [m.tag for m in parser.feed(answer[3:40], 20)] == ["T"]
    msgs = parser.feed(answer[40:], 30)
    assert [(m.tag, m.start_ns, m.end_ns) for m in msgs] == [("D", 20, 30), ("C", 30, 30), ("Z", 30, 30)]


# Malformed input and resynchronisation

MALFORMED = {
    "unknown type": (True, message("y", b"abc")),
    "absurd length": (True, b"Q\x7f\xff\xff\xff select"),
    "negative length": (True, b"Q\xff\xff\xff\xf0"),
    "length short of its type": (True, b"Q\x00\x00\x00\x04"),
    "Sync with a payload": (True, message("S", b"x")),
    "Describe over the server's limit": (True, b"D\x00\x01\x00\x00"),
    "bad startup code": (True, untagged(12345678)),
    "binary junk": (True, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
    "server: unknown type": (False, message("x", b"...")),
    "server: ReadyForQuery too long": (False, message("Z", b"II")),
    "server: huge DataRow length in a text": (False, b"\xff\xfe\xfd\xfc\xfb"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_input_is_counted_and_skipped(case):
    is_request, garbage = MALFORMED[case]
    prefix, valid = (query("select 0"), query("select 1") + SYNC) if is_request else (ready(), SELECT_1[1])
    stream = prefix + garbage + valid
    msgs, parser = parse_all(stream, is_request)
    assert [m.tag for m in msgs] == (["Q", "Q", "S"] if is_request else ["Z", "T", "D", "C", "Z"])
    assert parser.parse_errors >= 1 and parser.resyncs >= 1
    parser = PgsqlParser(is_request)
    byte_by_byte = [m for i in range(len(stream)) for m in parser.feed(stream[i : i + 1], i)]
    assert [untimed(m) for m in byte_by_byte] == [untimed(m) for m in msgs]


def test_joining_mid_message_is_no_error():
    answer = response_stream([SCRIPT, SELECT_1])
    for start in range(1, 40):
        msgs, parser = parse_all(answer[start:], is_request=False)
        assert [m.tag for m in msgs][-4:] == list("TDCZ"), start
        assert parser.parse_errors == 0, start


def test_a_well_formed_payload_is_required_of_a_found_header():
    # After a gap, "D\x00\x00\x00\x0b" inside a text looks like a DataRow
    # header; its "payload" does not decode, so the search goes on.
    parser = PgsqlParser(is_request=False)
    parser.gap(100, 1)
    msgs = parser.feed(b"...D\x00\x00\x00\x0bxxxxxxx" + ready(), 2)
    assert [m.tag for m in msgs] == ["Z"]
    assert parser.parse_errors == 0


# Gaps


def in_step(is_request: bool) -> PgsqlParser:
    """A parser past its first message, which may have been chance."""
    parser = PgsqlParser(is_request)
    assert len(parser.feed(query("select 0") if is_request else ready(), 0)) == 1
    return parser


def test_gap_inside_a_message_keeps_the_framing():
    big = data_row(b"x" * 5000, b"y")
    stream = big + complete("SELECT 1") + ready()
    parser = in_step(is_request=False)
    assert parser.feed(stream[:1000], 1) == []
    assert parser.gap(3000, 2) == []
    msgs = parser.feed(stream[4000:], 3)
    assert [(m.tag, m.truncated) for m in msgs] == [("D", True), ("C", False), ("Z", False)]
    assert (len(msgs[0].payload), msgs[0].size, msgs[0].end_ns) == (995, len(big) - 5, 3)
    assert parser.parse_errors == parser.resyncs == 0


def test_gap_in_the_first_message_seen_loses_the_framing():
    parser = PgsqlParser(is_request=False)  # its header may have been chance
    parser.feed(data_row(b"x" * 5000)[:1000], 1)
    parser.gap(3000, 2)
    assert parser.feed(b"x" * 1011 + ready(), 3)[0].tag == "Z"
    assert (parser.parse_errors, parser.resyncs) == (0, 0)


def test_gap_ending_a_message_delivers_it_truncated():
    stream = data_row(b"x" * 5000) + ready()
    parser = in_step(is_request=False)
    assert parser.feed(stream[:100], 1) == []
    (msg,) = parser.gap(len(stream) - 6 - 100, 2)
    assert (msg.tag, msg.end_ns, msg.truncated) == ("D", 2, True)
    assert [m.tag for m in parser.feed(stream[-6:], 3)] == ["Z"]
    assert parser.resyncs == 0


def test_gap_past_a_message_end_resynchronises():
    stream = data_row(b"x" * 5000) + complete("SELECT 1") + ready()
    parser = in_step(is_request=False)
    parser.feed(stream[:100], 1)
    (msg,) = parser.gap(len(stream) - 100 - 3, 2)  # the DataRow's end, the CommandComplete, most of the Z
    assert msg.tag == "D"
    assert [m.tag for m in parser.feed(stream[-3:] + SELECT_1[1], 3)] == list("TDCZ")
    assert (parser.parse_errors, parser.resyncs) == (0, 1)


def test_gap_at_a_message_boundary_loses_only_what_it_held():
    parser = in_step(is_request=True)
    parser.gap(len(query("select 2")), 2)
    assert [m.payload for m in parser.feed(query("select 3"), 3)] == [b"select 3\x00"]
    assert parser.parse_errors == 0


def test_gap_cutting_a_header_in_two():
    parser = PgsqlParser(is_request=False)
    parser.gap(10, 1)
    stream = SELECT_1[1]
    assert parser.feed(stream[:2], 2) == []
    assert [(m.tag, m.start_ns) for m in parser.feed(stream[2:], 3)][:1] == [("T", 2)]


def test_gap_inside_a_header_resynchronises():
    parser = in_step(is_request=True)
    stream = query("select 1")
    parser.feed(stream[:3], 1)
    parser.gap(4, 2)
    assert [m.tag for m in parser.feed(stream[7:] + query("select 2"), 3)] == ["Q"]
    assert parser.parse_errors == 0


# Limits


def test_message_over_the_kept_limit_is_counted_not_held():
    sql = "insert into blobs values ('" + "z" * (3 * MAX_KEPT) + "')"
    stream = query(sql) + query("select 1")
    parser = in_step(is_request=True)
    msgs = []
    for i in range(0, len(stream), 65536):
        msgs += parser.feed(stream[i : i + 65536], i)
        assert parser.buffered_bytes <= MAX_KEPT + 65536
    assert [(m.tag, len(m.payload), m.size) for m in msgs] == [("Q", MAX_KEPT, len(sql) + 1), ("Q", 9, 9)]
    assert (parser.truncated, parser.parse_errors) == (1, 0)


# Rows: simple queries


def test_select_1_as_psql_sends_it():
    rows, trace = run(CONNECT + [SELECT_1])
    assert rows == [
        {"time_ns": 500, "req_cmd": "Query", "req": "select 1", "resp": "SELECT 1\n(?column?)\n(1)", "latency": 100}
    ]
    assert trace.parse_errors == 0 and not trace.encrypted


def test_the_startup_exchange_makes_no_rows():
    rows, trace = run(CONNECT)
    assert rows == [] and trace.parse_errors == 0


def test_the_session_makes_one_row_per_query_and_execute():
    rows, trace = run(SESSION)
    assert columns(rows) == SESSION_ROWS
    assert trace.parse_errors == 0


def test_error_response_with_detail_and_hint():
    answer = error("23505", 'duplicate key value violates unique constraint "t_pkey"', D="Key (id)=(1) already exists.")
    rows, _ = run([(query("insert into t values (1)"), answer + ready("I"))])
    assert rows[0]["resp"] == (
        'ERROR 23505: duplicate key value violates unique constraint "t_pkey"\nDETAIL: Key (id)=(1) already exists.'
    )
    assert render_error({"S": "FEHLER", "C": "42601", "M": "Syntaxfehler", "H": "Versuchen Sie es"}) == (
        "FEHLER 42601: Syntaxfehler\nHINT: Versuchen Sie es"
    )


def test_error_part_way_through_a_script():
    answer = complete("INSERT 0 1") + error("42P01", 'relation "nope" does not exist') + ready("E")
    rows, _ = run([(query("insert into t values (1); select * from nope; select 2"), answer)])
    assert rows[0]["resp"] == 'INSERT 0 1\nERROR 42P01: relation "nope" does not exist'


def test_empty_query_and_notices_and_status_changes_in_the_answer():
    notice = error("00000", "there is no transaction in progress", severity="WARNING", tag="N")
    notification = message("A", int32(7) + cstring("ch") + cstring(""))
    answer = notice + parameter_status("TimeZone", "UTC") + EMPTY_QUERY + notification + ready()
    rows, trace = run([(query(""), answer), (query("commit"), notice + complete("COMMIT") + ready())])
    assert [r["resp"] for r in rows] == ["EMPTY QUERY", "COMMIT"]
    assert trace.parse_errors == 0


def test_copy_from_stdin_and_to_stdout():
    copy_in = (
        query("copy t from stdin"),
        message("G", b"\x00" + int16(2) + int16(0) + int16(0)),
    )
    data = (message("d", b"1\tx\n") + message("d", b"2\ty\n") + message("c"), complete("COPY 2") + ready())
    copy_out = (
        query("copy t to stdout"),
        message("H", b"\x00" + int16(1) + int16(0))
        + message("d", b"1\n")
        + message("c")
        + complete("COPY 1")
        + ready(),
    )
    rows, trace = run([copy_in, data, copy_out])
    assert columns(rows) == [("Query", "copy t from stdin", "COPY 2"), ("Query", "copy t to stdout", "COPY 1")]
    assert rows[0]["latency"] == 300  # to the ReadyForQuery after the client's data
    assert trace.parse_errors == 0


def test_rows_shown_are_limited():
    answer = row_description(("n", INT4)) + b"".join(data_row(b"%d" % i) for i in range(25)) + complete("SELECT 25")
    rows, _ = run([(query("select generate_series(0, 24)"), answer + ready())])
    assert rows[0]["resp"] == "SELECT 25\n(n)\n" + "\n".join(f"({i})" for i in range(10)) + "\n…"
    long_value = row_description(("r", TEXT)) + data_row(b"x" * 100) + complete("SELECT 1") + ready()
    rows, _ = run([(query("select repeat('x', 100)"), long_value)], body_limit=20)
    assert rows[0]["resp"] == "SELECT 1\n(r)\n('" + "x" * 20 + "…')"
    rows, _ = run([(query("select 1"), SELECT_1[1])], body_limit=0)
    assert rows[0]["resp"] == "SELECT 1"


def test_results_listed_are_limited():
    answer = b"".join(complete("INSERT 0 1") for _ in range(150)) + ready()
    rows, _ = run([(query("insert into t values (1);" * 150), answer)])
    lines = rows[0]["resp"].split("\n")
    assert (len(lines), lines[-1]) == (101, "… 50 more results")


# Rows: the extended protocol


def test_psycopg_batch_in_one_write():
    rows, trace = run([PSYCOPG])
    assert rows == [
        {
            "time_ns": 100,
            "req_cmd": "Execute",
            "req": USERS_SQL + " /* $1 = 42, $2 = 'alice' */",
            "resp": "SELECT 1\n(id, name)\n(42, 'alice')",
            "latency": 100,
        }
    ]


def test_binary_parameters_and_results_are_decoded_by_type():
    request = (
        parse("select $1, $2, $3, $4, $5", oids=(INT8, UUID, TIMESTAMPTZ, 17, 0))
        + bind(
            [struct.pack(">q", -5), bytes(range(16)), struct.pack(">q", 86_400_000_000), b"\x00\xff", b"?"],
            formats=[1],
            result_formats=[1],
        )
        + describe()
        + execute()
        + SYNC
    )
    answer = (
        PARSE_COMPLETE
        + BIND_COMPLETE
        + row_description(("a", INT8), ("b", UUID), ("c", TIMESTAMPTZ), ("d", 17), ("e", 0))
        + data_row(struct.pack(">q", -5), bytes(range(16)), struct.pack(">q", 86_400_000_000), b"\x00\xff", None)
        + complete("SELECT 1")
        + ready()
    )
    ((cmd, req, resp),) = columns(run([(request, answer)])[0])
    uuid, day_two = "'00010203-0405-0607-0809-0a0b0c0d0e0f'", "'2000-01-02 00:00:00+00'"
    assert req == f"select $1, $2, $3, $4, $5 /* $1 = -5, $2 = {uuid}, $3 = {day_two}, $4 = '\\x00ff', $5 = '\\x3f' */"
    assert resp == f"SELECT 1\n(a, b, c, d, e)\n(-5, {uuid}, {day_two}, '\\x00ff', NULL)"


def test_asyncpg_prepares_then_binds_binary_values():
    rows, trace = run([ASYNCPG_PREPARE, ASYNCPG_EXECUTE])
    assert columns(rows) == SESSION_ROWS[4:6]
    assert [(r["time_ns"], r["latency"]) for r in rows] == [(100, 100), (300, 100)]
    assert trace.parse_errors == 0


def test_named_statement_is_bound_again_in_later_batches():
    prepare = (parse("UPDATE a SET b = b + $1 WHERE id = $2;", name="P_1") + SYNC, PARSE_COMPLETE + ready("T"))
    def run_it(delta: bytes, key: bytes) -> tuple[bytes, bytes]:
        request = bind([delta, key], statement="P_1") + describe() + execute() + SYNC
        return request, BIND_COMPLETE + NO_DATA + complete("UPDATE 1") + ready("T")

    rows, _ = run([prepare, run_it(b"-1750", b"76862"), run_it(b"848", b"90567")])
    assert columns(rows) == [
        ("Parse", "UPDATE a SET b = b + $1 WHERE id = $2;", "ParseComplete"),
        ("Execute", "UPDATE a SET b = b + $1 WHERE id = $2; /* $1 = '-1750', $2 = '76862' */", "UPDATE 1"),
        ("Execute", "UPDATE a SET b = b + $1 WHERE id = $2; /* $1 = '848', $2 = '90567' */", "UPDATE 1"),
    ]


def test_a_new_unnamed_statement_replaces_the_last():
    def one_row(value: bytes) -> bytes:
        return BIND_COMPLETE + data_row(value) + complete("SELECT 1") + ready()

    first = (parse("select 1") + bind() + execute() + SYNC, PARSE_COMPLETE + one_row(b"1"))
    second = (parse("select 2") + bind() + execute() + SYNC, PARSE_COMPLETE + one_row(b"2"))
    again = (bind() + execute() + SYNC, one_row(b"2"))
    rows, _ = run([first, second, again])
    assert [r["req"] for r in rows] == ["select 1", "select 2", "select 2"]
    assert [r["resp"] for r in rows] == ["SELECT 1\n('1')", "SELECT 1\n('2')", "SELECT 1\n('2')"]  # no types: quoted


def test_several_executes_in_one_batch():
    executes = b"".join(bind([b"%d" % i]) + execute() for i in range(3))
    request = parse("insert into t values ($1)", oids=(INT4,)) + executes + SYNC
    answer = PARSE_COMPLETE + (BIND_COMPLETE + complete("INSERT 0 1")) * 3 + ready()
    rows, _ = run([(request, answer)])
    assert [r["req"] for r in rows] == [f"insert into t values ($1) /* $1 = {i} */" for i in range(3)]


def test_error_goes_to_the_batch_execute_and_the_next_batch_parses():
    rows, trace = run([BAD_PARSE, PSYCOPG])
    assert columns(rows) == [SESSION_ROWS[6], SESSION_ROWS[3]]
    assert trace.parse_errors == 0


def test_error_answered_before_the_client_finished_its_batch():
    trace = PgsqlTrace()
    trace.on_bytes(True, parse("selec 1") + FLUSH, 1)
    trace.on_bytes(False, error("42601", 'syntax error at or near "selec"'), 2)
    trace.on_bytes(True, bind() + execute() + SYNC, 3)  # discarded by the server
    trace.on_bytes(False, ready(), 4)
    assert [(r["req_cmd"], r["req"], r["resp"], r["latency"]) for r in trace.take_rows()] == [
        ("Parse", "selec 1", 'ERROR 42601: syntax error at or near "selec"', 3)
    ]
    assert trace.parse_errors == 0


def test_failed_commit_at_sync():
    request = parse("insert into t values (1)") + bind() + execute() + SYNC
    answer = PARSE_COMPLETE + BIND_COMPLETE + complete("INSERT 0 1") + error("23503", "violates foreign key") + ready()
    rows, _ = run([(request, answer)])
    assert columns(rows) == [
        ("Execute", "insert into t values (1)", "INSERT 0 1"),
        ("Sync", "insert into t values (1)", "ERROR 23503: violates foreign key"),
    ]


def test_sync_alone_makes_no_row_and_close_makes_one():
    rows, _ = run([(parse("select 1", name="s1") + SYNC, PARSE_COMPLETE + ready()), (SYNC, ready())])
    assert [r["req_cmd"] for r in rows] == ["Parse"]
    rows, _ = run([
        (parse("select 1", name="s1") + SYNC, PARSE_COMPLETE + ready()),
        (close("S", "s1") + SYNC, CLOSE_COMPLETE + ready()),
        (bind(statement="s1") + execute() + SYNC, error("26000", 'prepared statement "s1" does not exist') + ready()),
    ])
    assert columns(rows)[1:] == [
        ("Close", "select 1", "CloseComplete"),
        ("Execute", '<statement "s1" not seen>', 'ERROR 26000: prepared statement "s1" does not exist'),
    ]


def test_statement_prepared_before_tracing_began():
    answer = BIND_COMPLETE + data_row(b"x") + complete("SELECT 1") + ready()
    rows, trace = run([(bind([b"5"], statement="S_3") + execute() + SYNC, answer)])
    assert columns(rows) == [("Execute", "<statement \"S_3\" not seen> /* $1 = '5' */", "SELECT 1\n('x')")]
    assert trace.parse_errors == 0


def test_portal_suspended_by_a_row_limit():
    request = parse("select generate_series(1, 5)") + bind() + execute(max_rows=2) + SYNC
    answer = PARSE_COMPLETE + BIND_COMPLETE + data_row(b"1") + data_row(b"2") + SUSPENDED + ready("T")
    assert run([(request, answer)])[0][0]["resp"] == "SUSPENDED\n('1')\n('2')"


def test_function_call():
    request = message("F", uint32(764) + int16(1) + int16(1) + values([int32(0x20000)]) + int16(1))
    answer = message("V", int32(4) + int32(16385)) + ready()
    rows, _ = run([(request, answer)])
    assert columns(rows) == [("FunctionCall", "<function 764> /* $1 = '\\x00020000' */", "'\\x00004001'")]


# Encryption, cancelling, closing


def test_accepted_ssl_ends_parsing_without_errors():
    rows, trace = run([(SSL_REQUEST, b"S"), (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", b"\x16\x03\x03\x00\x7a")])
    assert (rows, trace.encrypted, trace.parse_errors) == ([], True, 0)


def test_refused_gssapi_then_refused_ssl_then_startup():
    rows, trace = run([(GSSENC_REQUEST, b"N"), (SSL_REQUEST, b"N"), (PSQL_STARTUP, SERVER_HELLO), SELECT_1])
    assert [r["req"] for r in rows] == ["select 1"] and trace.parse_errors == 0


def test_cancel_request_makes_no_row():
    rows, trace = run([(CANCEL, b"")])
    assert (rows, trace.parse_errors) == ([], 0)


def test_fatal_error_then_close_makes_a_row():
    trace = PgsqlTrace()
    trace.on_bytes(True, query("select pg_sleep(100)"), 10)
    trace.on_bytes(False, error("57P01", "terminating connection due to administrator command", severity="FATAL"), 50)
    trace.on_close(60)
    assert [(r["resp"], r["latency"]) for r in trace.take_rows()] == [
        ("FATAL 57P01: terminating connection due to administrator command\n" + INCOMPLETE, 40)
    ]


def test_failed_login_makes_no_row():
    rows, trace = run([(PSQL_STARTUP, error("28P01", 'password authentication failed for user "x"', severity="FATAL"))])
    trace.on_close(1000)
    assert trace.take_rows() == [] and rows == []


# Joining late, losing bytes, bad bytes


def test_joining_a_connection_mid_conversation():
    trace = PgsqlTrace()
    trace.on_bytes(False, SCRIPT[1][7:], 5)  # the end of an answer to a request before tracing began
    trace.on_bytes(True, SELECT_1[0], 10)
    trace.on_bytes(False, SELECT_1[1], 20)
    assert columns(trace.take_rows()) == [SESSION_ROWS[0]]
    assert trace.parse_errors == 1  # the ReadyForQuery that answered nothing seen


def test_request_lost_in_a_gap():
    trace = PgsqlTrace()
    trace.on_gap(True, len(NOPE[0]), 10)
    trace.on_bytes(False, NOPE[1], 20)
    trace.on_bytes(True, SELECT_1[0], 30)
    trace.on_bytes(False, SELECT_1[1], 40)
    assert [r["req"] for r in trace.take_rows()] == ["select 1"]


def test_end_of_a_large_answer_lost_in_a_gap():
    # The kernel captured the start of a large send(): the end of the rows,
    # the CommandComplete and the ReadyForQuery are a gap.
    rows = b"".join(data_row(b"%d" % i) for i in range(2000))
    answer = row_description(("n", INT4)) + rows + complete("SELECT 2000") + ready()
    trace = PgsqlTrace()
    trace.on_bytes(True, query("select n from big"), 10)
    trace.on_bytes(False, answer[:4096], 20)
    trace.on_gap(False, len(answer) - 4096, 20)
    trace.on_bytes(True, SELECT_1[0], 30)
    trace.on_bytes(False, SELECT_1[1], 40)
    big, small = trace.take_rows()
    assert big["resp"].startswith(INCOMPLETE + "\n(n)\n(0)\n(1)\n") and big["latency"] == 10
    assert (small["req"], small["resp"], small["latency"]) == ("select 1", "SELECT 1\n(?column?)\n(1)", 10)


def test_end_of_the_startup_answer_lost_in_a_gap():
    trace = PgsqlTrace()
    trace.on_bytes(True, PSQL_STARTUP, 10)
    trace.on_bytes(False, SERVER_HELLO[:100], 20)
    trace.on_gap(False, len(SERVER_HELLO) - 100, 20)  # its ReadyForQuery among the lost bytes
    trace.on_bytes(True, SELECT_1[0], 30)
    trace.on_bytes(False, SELECT_1[1], 40)
    assert columns(trace.take_rows()) == [SESSION_ROWS[0]]
    assert trace.parse_errors == 0


def test_lost_rows_inside_one_answer_keep_its_tag():
    answer = row_description(("v", TEXT)) + data_row(b"a" * 3000) + data_row(b"b") + complete("SELECT 2") + ready()
    trace = PgsqlTrace(body_limit=10)
    trace.on_bytes(True, query("select v from t"), 10)
    trace.on_bytes(False, answer[:100], 20)
    trace.on_gap(False, 2000, 20)  # inside the first DataRow
    trace.on_bytes(False, answer[2100:], 30)
    (row,) = trace.take_rows()
    assert (row["resp"], row["latency"], trace.parse_errors) == ("SELECT 2\n(v)\n('aaaaaaaaaa…')\n…", 20, 0)


def test_truncated_startup_message_still_opens_the_conversation():
    trace = PgsqlTrace()
    trace.on_bytes(True, SSL_REQUEST, 1)
    trace.on_bytes(False, b"N", 2)
    trace.on_bytes(True, PSQL_STARTUP[:20], 3)  # ends inside a parameter name
    trace.on_gap(True, len(PSQL_STARTUP) - 20, 3)
    trace.on_bytes(False, SERVER_HELLO, 4)
    trace.on_bytes(True, SELECT_1[0], 5)
    trace.on_bytes(False, SELECT_1[1], 6)
    assert [r["req"] for r in trace.take_rows()] == ["select 1"]
    assert trace.parse_errors == 0


def test_malformed_request_is_counted_and_the_next_one_parses():
    rows, trace = run(CONNECT + [(message("Q", b"no terminating nul") + query("select 1"), SELECT_1[1])])
    assert [r["req"] for r in rows] == ["select 1"]
    assert trace.parse_errors == 1


def test_answer_the_oldest_request_cannot_take_is_counted():
    rows, trace = run([(parse("select 1") + SYNC, BIND_COMPLETE + PARSE_COMPLETE + ready())])
    assert trace.parse_errors == 1 and [r["req_cmd"] for r in rows] == ["Parse"]


# Every cut, every byte

SPLIT_SESSIONS = {
    "psql": CONNECT + [SELECT_1, NOPE, SCRIPT],
    "extended": [PSYCOPG, ASYNCPG_PREPARE, ASYNCPG_EXECUTE, BAD_PARSE],
}


@pytest.mark.parametrize("case", SPLIT_SESSIONS)
def test_every_split_point_of_every_exchange_gives_the_same_rows(case):
    exchanges = SPLIT_SESSIONS[case]
    expected, _ = run(exchanges)
    longest = max(max(len(q), len(a)) for q, a in exchanges)
    for cut in range(longest + 1):
        rows, trace = run(exchanges, lambda data: [data[:cut], data[cut:]])
        assert rows == expected, cut
        assert trace.parse_errors == 0


def test_one_byte_per_feed_gives_the_same_rows():
    expected, _ = run(SESSION)
    rows, trace = run(SESSION, lambda data: [data[i : i + 1] for i in range(len(data))])
    assert rows == expected and trace.parse_errors == 0


def test_random_chunking_of_a_long_session():
    rng = random.Random(5)
    exchanges = CONNECT + [SELECT_1, NOPE, SCRIPT, PSYCOPG, ASYNCPG_PREPARE, ASYNCPG_EXECUTE, BAD_PARSE] * 30

    def random_pieces(data: bytes) -> list[bytes]:
        pieces, at = [], 0
        while at < len(data):
            size = rng.choice((1, 2, 5, 17, 64, 1000))
            pieces.append(data[at : at + size])
            at += size
        return pieces

    rows, trace = run(exchanges, random_pieces)
    assert columns(rows) == SESSION_ROWS * 30
    assert trace.parse_errors == 0


# Bounds


def test_waiting_requests_are_bounded():
    stitcher = PgsqlStitcher()
    parser = PgsqlParser(is_request=True)
    for msg in parser.feed(query("select 1") * (MAX_PENDING + 5), 1):
        stitcher.add_request(msg)
    assert stitcher.dropped_requests == 5


def test_prepared_statements_are_bounded():
    prepares = b"".join(parse(f"select {i}", name=f"s{i}") for i in range(MAX_STATEMENTS + 1)) + SYNC
    runs = bind(statement="s0") + execute() + bind(statement=f"s{MAX_STATEMENTS}") + execute() + SYNC
    answer = PARSE_COMPLETE * (MAX_STATEMENTS + 1) + ready()
    run_answer = (BIND_COMPLETE + complete("SELECT 1")) * 2 + ready()
    rows, _ = run([(prepares, answer), (runs, run_answer)])
    assert [r["req"] for r in rows[1:]] == ['<statement "s0" not seen>', f"select {MAX_STATEMENTS}"]


# Values


@pytest.mark.parametrize(
    "raw, fmt, type_oid, text",
    [
        (None, 0, INT4, "NULL"),
        (b"42", 0, INT4, "42"),
        (b"42", 0, 0, "'42'"),
        (b"it's", 0, TEXT, "'it''s'"),
        (b"t", 0, BOOL, "t"),
        (struct.pack(">h", -2), 1, 21, "-2"),
        (struct.pack(">i", 2**31 - 1), 1, INT4, "2147483647"),
        (struct.pack(">q", -(2**40)), 1, INT8, "-1099511627776"),
        (struct.pack(">d", 1.5), 1, 701, "1.5"),
        (struct.pack(">f", 0.25), 1, 700, "0.25"),
        (b"\x00", 1, BOOL, "false"),
        (b"caf\xc3\xa9", 1, 1043, "'café'"),
        (b"\x01{\"a\": 1}", 1, 3802, "'{\"a\": 1}'"),
        (b"\x02{}", 1, 3802, "'\\x027b7d'"),
        (struct.pack(">i", -1), 1, 1082, "'1999-12-31'"),
        (struct.pack(">q", 2**63 - 1), 1, 1114, "'infinity'"),
        (b"\x00\x01\x02", 1, INT4, "'\\x000102'"),  # wrong size for the type
        (b"\xde\xad", 1, 0, "'\\xdead'"),
        (b"x" * 50, 0, TEXT, "'" + "x" * 8 + "…'"),
        (b"\xff" * 50, 1, 17, "'\\xffffffff…'"),
    ],
)
def test_sql_literal(raw, fmt, type_oid, text):
    assert sql_literal(raw, fmt, type_oid, limit=8) == text


# The connector's view


def test_through_a_connection_in_time_order():
    conn = Connection(
        conn_id=3, upid="7:70", pid=7, family=2,
        local=Endpoint("127.0.0.1", 5432), remote=Endpoint("127.0.0.1", 50000), role=Role.SERVER,
    )
    conn.trace = PgsqlTrace(1024)
    recv, send = conn.streams[Direction.RECV], conn.streams[Direction.SEND]
    at_recv = at_send = 0
    for turn, (request, response) in enumerate(CONNECT + [SELECT_1, PSYCOPG]):
        recv.add(at_recv, len(request), request, 1000 * turn)
        send.add(at_send, len(response), response, 1000 * turn + 300)
        at_recv, at_send = at_recv + len(request), at_send + len(response)
    conn.feed_trace()
    rows = conn.trace.take_rows()
    assert [(r["req_cmd"], r["time_ns"], r["latency"]) for r in rows] == [("Query", 2000, 300), ("Execute", 3000, 300)]
    assert conn.take_new_parse_errors() == 0


def test_schema_has_the_common_columns_and_describes_every_column():
    pgsql, http = builtin_schemas()["pgsql_events"], builtin_schemas()["http_events"]
    assert pgsql.columns[:10] == http.columns[:10]
    assert pgsql.column_names[10:] == ["req_cmd", "req", "resp", "latency"]
    assert pgsql.column("latency").unit == "ns"
    assert PgsqlTrace.table == "pgsql_events"
    assert set(run([SELECT_1])[0][0]) == {"time_ns", *pgsql.column_names[10:]}
