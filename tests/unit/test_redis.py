"""RESP parsing, command/reply pairing and the redis_events trace, on bytes built here."""

import json
import random
from pathlib import Path

import pytest

from tracedb.connectors.socket_tracer.connection import Connection
from tracedb.connectors.socket_tracer.events import Direction, Endpoint, Role
from tracedb.protocols.redis import (
    LINE_LIMIT,
    MAX_DEPTH,
    MAX_KEPT_VALUES,
    RedisStitcher,
    RedisTrace,
    RespParser,
    command_of,
    render_reply,
)
from tracedb.schema import load_schema_dir

# Builders: the bytes redis-cli and redis-server put on the wire.


def _raw(item) -> bytes:
    return item if isinstance(item, bytes) else str(item).encode()


def command(*args) -> bytes:
    """A command as clients send it: an array of bulk strings."""
    return b"*%d\r\n" % len(args) + b"".join(bulk(arg) for arg in args)


def bulk(data) -> bytes:
    data = _raw(data)
    return b"$%d\r\n%s\r\n" % (len(data), data)


def simple(text: str) -> bytes:
    return b"+%s\r\n" % text.encode()


def error(text: str) -> bytes:
    return b"-%s\r\n" % text.encode()


def integer(n: int) -> bytes:
    return b":%d\r\n" % n


def aggregate(type_byte: bytes, *items: bytes) -> bytes:
    return b"%s%d\r\n" % (type_byte, len(items)) + b"".join(items)


def array(*items: bytes) -> bytes:
    return aggregate(b"*", *items)


def push(*items: bytes) -> bytes:
    return aggregate(b">", *items)


def resp3_map(*pairs: tuple[bytes, bytes]) -> bytes:
    return b"%%%d\r\n" % len(pairs) + b"".join(k + v for k, v in pairs)


NIL = b"$-1\r\n"
OK = simple("OK")
UNKNOWN_FOO = error("ERR unknown command 'FOO', with args beginning with: 'bar' ")
HELLO_REPLY = resp3_map(
    (bulk("server"), bulk("redis")),
    (bulk("version"), bulk("7.2.4")),
    (bulk("proto"), integer(3)),
    (bulk("id"), integer(7)),
    (bulk("mode"), bulk("standalone")),
    (bulk("role"), bulk("master")),
    (bulk("modules"), array()),
)


def confirmation(kind: str, channel, count: int, resp3: bool = False) -> bytes:
    items = (bulk(kind), NIL if channel is None else bulk(channel), integer(count))
    return push(*items) if resp3 else array(*items)


def message(channel: str, payload: str, resp3: bool = False) -> bytes:
    items = (bulk("message"), bulk(channel), bulk(payload))
    return push(*items) if resp3 else array(*items)


# Helpers


def parse(data: bytes, is_request: bool, **kw):
    parser = RespParser(is_request, **kw)
    return parser.feed(data, 1), parser


def reply_text(data: bytes) -> str:
    (msg,), parser = parse(data, is_request=False)
    assert parser.parse_errors == 0
    return render_reply(msg.value)


def request(data: bytes):
    (msg,), parser = parse(data, is_request=True)
    assert parser.parse_errors == 0
    return command_of(msg)


def converse(exchanges, trace=None, start_ns=100, step_ns=10):
    """Feed (request bytes, reply bytes) exchanges one after the other, each
    request and reply one syscall; return the rows."""
    trace = trace or RedisTrace()
    t = start_ns
    for sent, received in exchanges:
        if sent:
            trace.on_bytes(True, sent, t)
        if received:
            trace.on_bytes(False, received, t + step_ns // 2)
        t += step_ns
    trace.on_close(t)
    return trace.take_rows()


def untimed(rows):
    return [(r["req_cmd"], json.loads(r["req_args"]), r["resp"]) for r in rows]


# The RESP2 and RESP3 value types


def test_command_as_redis_cli_sends_it():
    data = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"
    assert command("SET", "k", "v") == data
    (msg,), parser = parse(data, is_request=True)
    assert [item.value for item in msg.value.value] == [b"SET", b"k", b"v"]
    cmd = command_of(msg)
    assert (cmd.name, cmd.args, cmd.arg_count, cmd.args_json()) == ("SET", ["k", "v"], 2, '["k","v"]')
    assert parser.parse_errors == 0


@pytest.mark.parametrize(
    "data, text",
    [
        (OK, "OK"),
        (simple("QUEUED"), "QUEUED"),
        (UNKNOWN_FOO, "ERR unknown command 'FOO', with args beginning with: 'bar' "),
        (integer(3), "(integer) 3"),
        (integer(-42), "(integer) -42"),
        (bulk("value"), '"value"'),
        (bulk(""), '""'),
        (bulk(b'say "hi"\r\n'), r'"say \"hi\"\r\n"'),
        (NIL, "(nil)"),
        (b"*-1\r\n", "(nil)"),
        (array(), "[]"),
        (array(bulk("a"), integer(1), NIL, array(bulk("x"))), '["a",1,null,["x"]]'),
        (array(OK, error("WRONGTYPE Operation against a key")), '["OK","(error) WRONGTYPE Operation against a key"]'),
    ],
)
def test_resp2_replies(data, text):
    assert reply_text(data) == text


@pytest.mark.parametrize(
    "data, text",
    [
        (b"_\r\n", "(nil)"),
        (b"#t\r\n", "(true)"),
        (b"#f\r\n", "(false)"),
        (b",3.14\r\n", "(double) 3.14"),
        (b",-inf\r\n", "(double) -inf"),
        (b"(34928903284092385093248509438509\r\n", "(big number) 34928903284092385093248509438509"),
        (b"!21\r\nSYNTAX invalid syntax\r\n", "SYNTAX invalid syntax"),
        (b"=15\r\ntxt:Some string\r\n", '"Some string"'),
        (resp3_map((bulk("a"), integer(1)), (simple("b"), b",2.5\r\n")), '{"a":1,"b":2.5}'),
        (resp3_map((integer(1), b"#t\r\n")), '{"1":true}'),
        (b"~2\r\n$1\r\nx\r\n,nan\r\n", '["x","nan"]'),
        (push(bulk("invalidate"), array(bulk("k"))), '["invalidate",["k"]]'),
        (b"|1\r\n+ttl\r\n:3600\r\n" + bulk("v"), '"v"'),
        (array(b"|1\r\n+key-popularity\r\n%0\r\n" + integer(1), integer(2)), "[1,2]"),
        (b"|0\r\n" + OK, "OK"),
    ],
)
def test_resp3_replies(data, text):
    assert reply_text(data) == text


def test_a_message_is_timed_from_its_first_byte_to_its_last():
    parser = RespParser(is_request=False)
    data = array(bulk("a"), bulk("b"))
    assert parser.feed(data[:5], 10) == []
    assert parser.feed(data[5:-1], 20) == []
    msg, ok = parser.feed(data[-1:] + OK, 30)
    assert (msg.start_ns, msg.end_ns, ok.start_ns, ok.end_ns) == (10, 30, 30, 30)


# Commands: names, subcommands, arguments


@pytest.mark.parametrize(
    "args, name, rest",
    [
        (("client", "setname", "x"), "CLIENT SETNAME", ["x"]),
        (("CONFIG", "GET", "maxmemory"), "CONFIG GET", ["maxmemory"]),
        (("XINFO", "STREAM", "s"), "XINFO STREAM", ["s"]),
        (("ACL", "SETUSER", "alice", "on"), "ACL SETUSER", ["alice", "on"]),
        (("MEMORY", "USAGE", "k"), "MEMORY USAGE", ["k"]),
        (("CLUSTER", "INFO"), "CLUSTER INFO", []),
        (("OBJECT", "ENCODING", "k"), "OBJECT ENCODING", ["k"]),
        (("SCRIPT", "LOAD", "return 1"), "SCRIPT LOAD", ["return 1"]),
        (("FUNCTION", "LIST"), "FUNCTION LIST", []),
        (("COMMAND", "DOCS", "get"), "COMMAND DOCS", ["get"]),
        (("COMMAND",), "COMMAND", []),
        (("CLIENT", "\x00bad"), "CLIENT", ["\x00bad"]),
        (("get", "CLIENT"), "GET", ["CLIENT"]),
        (("FT.SEARCH", "idx", "*"), "FT.SEARCH", ["idx", "*"]),
    ],
)
def test_command_names(args, name, rest):
    cmd = request(command(*args))
    assert (cmd.name, cmd.args) == (name, rest)


def test_arguments_are_binary_safe():
    cmd = request(command("SET", b"k\xff\x00", "é"))
    assert json.loads(cmd.args_json()) == ["k\\xff\x00", "é"]


def test_long_argument_is_cut_with_its_size_noted():
    parser = RespParser(is_request=True, value_limit=8)
    (msg,) = parser.feed(command("SET", "k", "v" * 100, "EX", "10"), 1)
    assert json.loads(command_of(msg).args_json()) == ["k", "vvvvvvvv…(100 bytes)", "EX", "10"]


def test_arguments_past_what_a_message_keeps_are_counted():
    members = [str(i) for i in range(MAX_KEPT_VALUES + 50)]
    cmd = request(command("SADD", "s", *members))
    args = json.loads(cmd.args_json())
    assert cmd.arg_count == len(members) + 1
    assert args[:3] == ["s", "0", "1"]
    assert args[-1] == f"…({cmd.arg_count - len(args) + 1} more)"


@pytest.mark.parametrize(
    "args, shown",
    [
        (("AUTH", "secret"), ["(redacted)"]),
        (("AUTH", "alice", "secret"), ["(redacted)", "(redacted)"]),
        (("HELLO", "3", "AUTH", "al", "secret", "SETNAME", "a"), ["3", "AUTH", "al", "(redacted)", "SETNAME", "a"]),
        (("MIGRATE", "h", "1", "", "0", "5", "AUTH2", "u", "pw"), ["h", "1", "", "0", "5", "AUTH2", "u", "(redacted)"]),
        (("CONFIG", "SET", "requirepass", "pw", "maxmemory", "1gb"), ["requirepass", "(redacted)", "maxmemory", "1gb"]),
        (("ACL", "SETUSER", ">x", "on", ">pw", "~*", "+@all"), [">x", "on", "(redacted)", "~*", "+@all"]),
    ],
)
def test_passwords_are_hidden(args, shown):
    assert request(command(*args)).args == shown


# Inline commands


@pytest.mark.parametrize(
    "line, name, args",
    [
        (b"PING\r\n", "PING", []),
        (b"ping\n", "PING", []),
        (b"  set k  v \r\n", "SET", ["k", "v"]),
        (b'SET k "a b\\x41\\n"\r\n', "SET", ["k", "a bA\n"]),
        (b"SET k 'it\\'s'\r\n", "SET", ["k", "it's"]),
        (b'SET k ""\r\n', "SET", ["k", ""]),
    ],
)
def test_inline_commands(line, name, args):
    cmd = request(line)
    assert (cmd.name, cmd.args) == (name, args)


def test_empty_inline_lines_are_ignored():
    msgs, parser = parse(b"\r\n\r\n  \r\nPING\r\n", is_request=True)
    assert [command_of(m).name for m in msgs] == ["PING"]
    assert parser.parse_errors == 0


@pytest.mark.parametrize("line", [b'SET k "open\r\n', b'SET k "a"b\r\n', b"SET k \x01\r\n", b"12 k\r\n"])
def test_bad_inline_commands_are_malformed(line):
    msgs, parser = parse(line + command("GET", "k"), is_request=True)
    assert [command_of(m).name for m in msgs] == ["GET"]
    assert parser.parse_errors == 1


def test_inline_command_where_the_stream_may_be_mid_message_must_be_known():
    # Tracing that joins a connection mid-value sees the value's tail first.
    msgs, parser = parse(b"tail of a value\r\n" + command("GET", "k") + b"anything goes\r\n", is_request=True)
    assert [command_of(m).name for m in msgs] == ["GET", "ANYTHING"]
    assert parser.parse_errors == 1


# Pairing


def test_set_and_get():
    rows = converse([(command("SET", "k", "v"), OK), (command("GET", "k"), bulk("v")), (command("GET", "x"), NIL)])
    assert untimed(rows) == [("SET", ["k", "v"], "OK"), ("GET", ["k"], '"v"'), ("GET", ["x"], "(nil)")]
    assert [(r["time_ns"], r["latency"]) for r in rows] == [(100, 5), (110, 5), (120, 5)]
    assert set(rows[0]) == {"time_ns", "req_cmd", "req_args", "resp", "latency"}


def test_pipeline_in_one_write_pairs_in_order():
    sent = command("SET", "a", "1") + command("INCR", "a") + command("GET", "a")
    rows = converse([(sent, OK + integer(2) + bulk("2"))])
    assert untimed(rows) == [("SET", ["a", "1"], "OK"), ("INCR", ["a"], "(integer) 2"), ("GET", ["a"], '"2"')]


def test_unknown_command_error_is_its_resp():
    rows = converse([(command("FOO", "bar"), UNKNOWN_FOO), (command("PING"), simple("PONG"))])
    assert untimed(rows) == [
        ("FOO", ["bar"], "ERR unknown command 'FOO', with args beginning with: 'bar' "),
        ("PING", [], "PONG"),
    ]


def test_hello_3_then_resp3_replies():
    rows = converse(
        [
            (command("HELLO", "3"), HELLO_REPLY),
            (command("HGETALL", "h"), resp3_map((bulk("f"), bulk("v")))),
            (command("EXISTS", "h"), integer(1)),
        ]
    )
    hello, hgetall, _ = rows
    assert json.loads(hello["resp"]) == {
        "server": "redis", "version": "7.2.4", "proto": 3, "id": 7,
        "mode": "standalone", "role": "master", "modules": [],
    }
    assert hgetall["resp"] == '{"f":"v"}'


def test_multi_exec():
    sent = command("MULTI") + command("SET", "k", "1") + command("INCR", "k") + command("EXEC")
    received = OK + simple("QUEUED") + simple("QUEUED") + array(OK, integer(2))
    assert untimed(converse([(sent, received)])) == [
        ("MULTI", [], "OK"),
        ("SET", ["k", "1"], "QUEUED"),
        ("INCR", ["k"], "QUEUED"),
        ("EXEC", [], '["OK",2]'),
    ]


def test_blocking_command_has_a_long_latency():
    trace = RedisTrace()
    trace.on_bytes(True, command("BLPOP", "q", "0"), 1_000)
    trace.on_bytes(True, command("PING"), 2_000)  # pipelined behind the blocked command
    trace.on_bytes(False, array(bulk("q"), bulk("job")), 5_000_000_000)
    trace.on_bytes(False, simple("PONG"), 5_000_000_001)
    rows = trace.take_rows()
    assert [(r["req_cmd"], r["resp"], r["latency"]) for r in rows] == [
        ("BLPOP", '["q","job"]', 5_000_000_000 - 1_000),
        ("PING", "PONG", 5_000_000_001 - 2_000),
    ]


@pytest.mark.parametrize("resp3", [False, True], ids=["resp2", "resp3"])
def test_subscribe_messages_unsubscribe(resp3):
    hello = [(command("HELLO", "3"), HELLO_REPLY)] if resp3 else []
    rows = converse(
        hello
        + [
            (
                command("SUBSCRIBE", "news", "sport"),
                confirmation("subscribe", "news", 1, resp3) + confirmation("subscribe", "sport", 2, resp3),
            ),
            (b"", message("news", "hello", resp3)),
            (b"", message("sport", "goal", resp3)),
            (
                command("UNSUBSCRIBE"),
                confirmation("unsubscribe", "news", 1, resp3) + confirmation("unsubscribe", "sport", 0, resp3),
            ),
            (command("GET", "k"), bulk("v")),
        ]
    )
    assert untimed(rows[len(hello) :]) == [
        ("SUBSCRIBE", ["news", "sport"], '[["subscribe","news",1],["subscribe","sport",2]]'),
        ("", [], '["message","news","hello"]'),
        ("", [], '["message","sport","goal"]'),
        ("UNSUBSCRIBE", [], '[["unsubscribe","news",1],["unsubscribe","sport",0]]'),
        ("GET", ["k"], '"v"'),
    ]
    subscribe, first_message = rows[len(hello)], rows[len(hello) + 1]
    assert subscribe["latency"] == 5
    assert (first_message["time_ns"], first_message["latency"]) == (subscribe["time_ns"] + 15, 0)


def test_messages_between_a_command_and_its_reply_do_not_shift_pairing():
    # RESP2 subscribed mode: PING is answered with an array; a pattern message comes first.
    pmessage = array(bulk("pmessage"), bulk("n*"), bulk("news"), bulk("x"))
    rows = converse(
        [
            (command("PSUBSCRIBE", "n*"), confirmation("psubscribe", "n*", 1)),
            (command("PING"), pmessage + array(bulk("pong"), bulk(""))),
            (command("PUNSUBSCRIBE", "n*"), message("news", "late") + confirmation("punsubscribe", "n*", 0)),
            (command("LRANGE", "l", "0", "-1"), array(bulk("message"), bulk("looks"), bulk("like one"))),
        ]
    )
    assert untimed(rows) == [
        ("PSUBSCRIBE", ["n*"], '["psubscribe","n*",1]'),
        ("", [], '["pmessage","n*","news","x"]'),
        ("PING", [], '["pong",""]'),
        ("", [], '["message","news","late"]'),
        ("PUNSUBSCRIBE", ["n*"], '["punsubscribe","n*",0]'),
        ("LRANGE", ["l", "0", "-1"], '["message","looks","like one"]'),  # out of pub/sub mode: a reply
    ]


def test_unsubscribe_from_nothing():
    rows = converse([(command("UNSUBSCRIBE"), confirmation("unsubscribe", None, 0)), (command("PING"), simple("PONG"))])
    assert untimed(rows) == [("UNSUBSCRIBE", [], '["unsubscribe",null,0]'), ("PING", [], "PONG")]


def test_unsubscribe_from_all_ends_at_the_next_reply_or_the_close():
    # Channels left with patterns still subscribed: the count never reaches 0.
    two_left = confirmation("unsubscribe", "a", 2) + confirmation("unsubscribe", "b", 1)
    trace = RedisTrace()
    trace.on_bytes(True, command("UNSUBSCRIBE"), 1)
    trace.on_bytes(False, two_left, 2)
    assert trace.take_rows() == []
    trace.on_close(3)
    assert untimed(trace.take_rows()) == [("UNSUBSCRIBE", [], '[["unsubscribe","a",2],["unsubscribe","b",1]]')]
    rows = converse(
        [
            (command("UNSUBSCRIBE"), confirmation("unsubscribe", "a", 1)),
            (command("PING"), array(bulk("pong"), bulk(""))),
        ]
    )
    assert untimed(rows) == [("UNSUBSCRIBE", [], '["unsubscribe","a",1]'), ("PING", [], '["pong",""]')]


def test_resp3_pushes_are_rows_of_their_own():
    invalidate = push(bulk("invalidate"), array(bulk("k")))
    rows = converse(
        [
            (command("HELLO", "3"), HELLO_REPLY),
            (command("CLIENT", "TRACKING", "on"), OK),
            (command("GET", "k"), invalidate + bulk("v")),
        ]
    )
    assert untimed(rows)[1:] == [
        ("CLIENT TRACKING", ["on"], "OK"),
        ("", [], '["invalidate",["k"]]'),
        ("GET", ["k"], '"v"'),
    ]


def test_client_reply_off_skip_on():
    rows = converse(
        [
            (command("CLIENT", "REPLY", "OFF"), b""),
            (command("SET", "a", "1"), b""),
            (command("CLIENT", "REPLY", "ON"), OK),
            (command("CLIENT", "REPLY", "SKIP"), b""),
            (command("SET", "b", "2"), b""),
            (command("GET", "b"), bulk("2")),
        ]
    )
    assert [(r["req_cmd"], r["resp"], r["latency"]) for r in rows] == [
        ("CLIENT REPLY", "", 0),
        ("SET", "", 0),
        ("CLIENT REPLY", "OK", 5),
        ("CLIENT REPLY", "", 0),
        ("SET", "", 0),
        ("GET", '"2"', 5),
    ]


def test_monitor_feed_is_out_of_band_until_reset():
    feed = simple('1700000000.123456 [0 127.0.0.1:5000] "get" "k"')
    trace = RedisTrace()
    rows = converse([(command("MONITOR"), OK), (b"", feed), (b"", feed), (command("RESET"), simple("RESET"))], trace)
    assert untimed(rows) == [
        ("MONITOR", [], "OK"),
        ("", [], '1700000000.123456 [0 127.0.0.1:5000] "get" "k"'),
        ("", [], '1700000000.123456 [0 127.0.0.1:5000] "get" "k"'),
        ("RESET", [], "RESET"),
    ]
    assert converse([(b"", feed)], trace, start_ns=1000) == []
    assert trace.parse_errors == 1


def test_reply_without_a_command_is_counted_and_dropped():
    trace = RedisTrace()
    trace.on_bytes(False, OK, 1)  # its command was sent before tracing began
    rows = converse([(command("GET", "k"), bulk("v"))], trace)
    assert untimed(rows) == [("GET", ["k"], '"v"')]
    assert trace.parse_errors == 1


def test_reply_older_than_the_waiting_command_is_unmatched():
    trace = RedisTrace()
    trace.on_bytes(True, command("GET", "k"), 100)
    # Replies are fed in time order with commands; this one says it was read first.
    stale, answer = RespParser(is_request=False).feed(simple("stale"), 50) + RespParser(False).feed(bulk("v"), 150)
    assert trace.stitcher.add_reply(stale) == []
    (row,) = trace.stitcher.add_reply(answer)
    assert (row["req_cmd"], row["resp"], trace.parse_errors) == ("GET", '"v"', 1)


def test_waiting_commands_are_bounded_and_pairing_stays_in_step():
    stitcher = RedisStitcher(max_pending=3)
    parser = RespParser(is_request=True)
    for i in range(5):
        (msg,) = parser.feed(command("GET", str(i)), i)
        stitcher.add_command(command_of(msg))
    assert (stitcher.waiting_commands, stitcher.dropped_commands) == (3, 2)
    replies = RespParser(is_request=False).feed(b"".join(bulk(f"v{i}") for i in range(5)), 10)
    rows = [row for reply in replies for row in stitcher.add_reply(reply)]
    assert [(json.loads(r["req_args"]), r["resp"]) for r in rows] == [(["2"], '"v2"'), (["3"], '"v3"'), (["4"], '"v4"')]


# Splitting: any cut, or one byte per feed, gives the same rows

SPLIT_CASES = {
    "set get": ([command("SET", "k", "v"), command("GET", "k"), command("GET", "x")], [OK, bulk("v"), NIL]),
    "client setname": ([command("CLIENT", "SETNAME", "x")], [OK]),
    "pipeline": (
        [command("SET", "a", "1") + command("INCR", "a") + command("GET", "a")],
        [OK + integer(2) + bulk("2")],
    ),
    "unknown": ([command("FOO", "bar")], [UNKNOWN_FOO]),
    "hello map": ([command("HELLO", "3"), command("SMEMBERS", "s")], [HELLO_REPLY, b"~2\r\n$1\r\na\r\n,1.5\r\n"]),
    "pubsub": (
        [command("SUBSCRIBE", "c"), command("UNSUBSCRIBE", "c")],
        [
            confirmation("subscribe", "c", 1) + message("c", "m1") + message("c", "m2"),
            confirmation("unsubscribe", "c", 0),
        ],
    ),
    "multi": ([command("MULTI") + command("SET", "k", "v") + command("EXEC")], [OK + simple("QUEUED") + array(OK)]),
    "inline": ([b"PING\r\n", b'SET k "v w"\r\n'], [simple("PONG"), OK]),
    "attribute": ([command("GET", "k")], [b"|1\r\n+ttl\r\n:9\r\n" + bulk("v")]),
}


def _stream_rows(requests: bytes, replies: bytes, cut: int, request_cut: int):
    trace = RedisTrace()
    trace.on_bytes(True, requests[:request_cut], 10)
    trace.on_bytes(True, requests[request_cut:], 20)
    trace.on_bytes(False, replies[:cut], 30)
    trace.on_bytes(False, replies[cut:], 40)
    trace.on_close(50)
    return trace.take_rows(), trace


@pytest.mark.parametrize("case", SPLIT_CASES)
def test_every_split_point_gives_the_same_rows(case):
    sent, received = (b"".join(parts) for parts in SPLIT_CASES[case])
    whole, _ = _stream_rows(sent, received, 0, 0)
    assert whole and all(r["resp"] for r in whole)
    for cut in range(len(sent) + 1):
        rows, trace = _stream_rows(sent, received, 0, cut)
        assert untimed(rows) == untimed(whole), cut
        assert trace.parse_errors == 0
    for cut in range(len(received) + 1):
        rows, trace = _stream_rows(sent, received, cut, 0)
        assert untimed(rows) == untimed(whole), cut
        assert trace.parse_errors == 0


@pytest.mark.parametrize("case", SPLIT_CASES)
def test_one_byte_per_feed_gives_the_same_rows(case):
    sent, received = (b"".join(parts) for parts in SPLIT_CASES[case])
    whole, _ = _stream_rows(sent, received, 0, 0)
    trace = RedisTrace()
    for i in range(len(sent)):
        trace.on_bytes(True, sent[i : i + 1], i)
    for i in range(len(received)):
        trace.on_bytes(False, received[i : i + 1], len(sent) + i)
    trace.on_close(10**9)
    rows = trace.take_rows()
    assert untimed(rows) == untimed(whole)
    assert trace.parse_errors == 0
    assert rows[0]["time_ns"] == 0


def test_split_times_follow_the_bytes():
    sent, received = command("GET", "k"), bulk("value")
    for cut in range(1, len(received)):
        rows, _ = _stream_rows(sent, received, cut, len(sent))
        (row,) = rows
        assert (row["time_ns"], row["latency"]) == (10, 40 - 10)
    rows, _ = _stream_rows(sent, received, len(received), len(sent))
    assert rows[0]["latency"] == 30 - 10


def test_random_chunking_of_a_long_mixed_stream():
    rng = random.Random(11)
    requests, replies = [], []
    for _ in range(300):
        case = rng.choice([c for c in SPLIT_CASES if c != "hello map"])  # RESP2 pub/sub needs RESP2
        requests += SPLIT_CASES[case][0]
        replies += SPLIT_CASES[case][1]
    sent, received = b"".join(requests), b"".join(replies)
    whole, trace = _stream_rows(sent, received, 0, 0)
    assert len(whole) > 300 and trace.parse_errors == 0
    trace, at = RedisTrace(), 0
    while at < len(sent):
        size = rng.choice((1, 2, 3, 7, 64, 500))
        trace.on_bytes(True, sent[at : at + size], 1)
        at += size
    at = 0
    while at < len(received):
        size = rng.choice((1, 2, 3, 7, 64, 500))
        trace.on_bytes(False, received[at : at + size], 2)
        at += size
    assert untimed(trace.take_rows()) == untimed(whole)
    assert trace.parse_errors == 0


# Gaps


def test_gap_inside_a_bulk_string_keeps_framing():
    # As when a value is past the kernel's capture limit.
    value = b"x" * 10_000
    trace = RedisTrace(value_limit=16)
    sent = command("SET", "k", value)
    trace.on_bytes(True, sent[:100], 1)
    trace.on_gap(True, 9_000, 1)
    trace.on_bytes(True, sent[9_100:] + command("GET", "k"), 2)
    reply = bulk(value)
    trace.on_bytes(False, OK + reply[:50], 3)
    trace.on_gap(False, len(reply) - 50, 4)  # the rest of the value, its CRLF included
    trace.on_bytes(False, b"", 5)
    rows = trace.take_rows()
    assert [(r["req_cmd"], r["req_args"], r["resp"], r["latency"]) for r in rows] == [
        ("SET", '["k","xxxxxxxxxxxxxxxx…(10000 bytes)"]', "OK", 3 - 1),
        ("GET", '["k"]', '"xxxxxxxxxxxxxxxx…(10000 bytes)"', 4 - 2),
    ]
    assert trace.parse_errors == 0


def test_bytes_after_a_gap_inside_a_value_are_not_kept_as_if_contiguous():
    parser = RespParser(is_request=False, value_limit=100)
    assert parser.feed(b"$20\r\nabcde", 1) == []
    parser.gap(5, 2)
    (msg,) = parser.feed(b"klmnopqrst\r\n", 3)
    assert (msg.value.value, msg.value.size) == (b"abcde", 20)


def test_gap_ending_a_bulk_string_returns_its_message_and_resyncs():
    parser = RespParser(is_request=False)
    assert parser.feed(b"$10\r\n01234", 1) == []
    (msg,) = parser.gap(5 + 2 + 3, 2)  # the rest, the CRLF and 3 bytes of what followed
    assert (msg.value.size, msg.end_ns) == (10, 2)
    assert not parser.synchronised
    msgs = parser.feed(b"K\r\n" + integer(5), 3)
    assert [render_reply(m.value) for m in msgs] == ["(integer) 5"]
    assert parser.parse_errors == 0


def test_gap_outside_a_bulk_string_drops_the_partial_message_and_resyncs():
    parser = RespParser(is_request=True)
    sent = command("MSET", "a", "1", "b", "2")
    assert parser.feed(sent[:12], 1) == []  # inside the second argument's length line
    parser.gap(10, 2)
    assert parser.parse_errors == 1 and not parser.synchronised
    msgs = parser.feed(sent[22:] + command("GET", "a"), 3)
    assert [command_of(m).name for m in msgs] == ["GET"]
    assert msgs[0].lost_before_ns == 2
    assert parser.parse_errors == 1  # "$1\r\n2\r\n" lines are no request start


def test_gap_at_a_message_boundary_is_no_error():
    parser = RespParser(is_request=False)
    assert len(parser.feed(OK, 1)) == 1
    parser.gap(len(OK), 2)
    assert [render_reply(m.value) for m in parser.feed(integer(1), 3)] == ["(integer) 1"]
    assert parser.parse_errors == 0


def test_gap_cutting_a_request_start_in_two():
    parser = RespParser(is_request=True)
    parser.gap(10, 1)
    assert parser.feed(b"*1\r", 2) == []
    (msg,) = parser.feed(b"\n$4\r\nPING\r\n", 3)
    assert (command_of(msg).name, msg.start_ns, msg.end_ns) == ("PING", 2, 3)


def test_lost_reply_gives_up_the_commands_sent_before_it():
    trace = RedisTrace()
    trace.on_bytes(True, command("INCR", "a") + command("INCR", "b"), 10)
    trace.on_bytes(False, b":12", 20)
    trace.on_gap(False, 100, 30)  # the rest of a's reply and perhaps b's: which is unknowable
    trace.on_bytes(False, b"3\r\n", 40)
    trace.on_bytes(True, command("INCR", "c"), 50)
    trace.on_bytes(False, integer(1), 60)
    assert untimed(trace.take_rows()) == [("INCR", ["c"], "(integer) 1")]
    assert (trace.stitcher.dropped_commands, trace.parse_errors) == (2, 1)


def test_gap_past_the_end_of_a_reply_keeps_it_and_gives_up_the_rest():
    trace = RedisTrace()
    trace.on_bytes(True, command("GET", "a") + command("GET", "b"), 10)
    trace.on_bytes(False, b"$5\r\nva", 20)
    trace.on_gap(False, 100, 30)  # the rest of a's value, then b's reply or part of it
    trace.on_bytes(False, b"lue-b\r\n", 40)
    trace.on_bytes(True, command("GET", "c"), 50)
    trace.on_bytes(False, bulk("c"), 60)
    assert untimed(trace.take_rows()) == [("GET", ["a"], '"va…(5 bytes)"'), ("GET", ["c"], '"c"')]
    assert (trace.stitcher.dropped_commands, trace.parse_errors) == (1, 0)


def test_lost_command_reply_is_unmatched_by_time():
    trace = RedisTrace()
    sent = command("SET", "a", "1")
    trace.on_bytes(True, sent[:6], 10)
    trace.on_gap(True, len(sent) - 6, 10)
    trace.on_bytes(False, OK, 20)  # answers the lost command
    trace.on_bytes(True, command("GET", "a"), 30)
    trace.on_bytes(False, bulk("1"), 40)
    assert untimed(trace.take_rows()) == [("GET", ["a"], '"1"')]
    assert trace.parse_errors == 2  # the partial command and the reply that lost its command


# Malformed input

MALFORMED = {
    "request not an array": (True, b"$3\r\nGET\r\n"),
    "request integer argument": (True, b"*2\r\n$3\r\nGET\r\n:1\r\n"),
    "request negative length": (True, b"*1\r\n$-1\r\n"),
    "request length not a number": (True, b"*1\r\n$x\r\nGET\r\n"),
    "request bulk longer than its length": (True, b"*1\r\n$2\r\nGET\r\n"),
    "request binary junk": (True, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n"),
    "request bare LF": (True, b"*1\n$4\r\nPING\r\n"),
    "reply unknown type": (False, b"?what\r\n"),
    "reply line with a lost LF": (False, b"+OK\r$-1\r\n"),
    "reply bad integer": (False, b":12a\r\n"),
    "reply bad boolean": (False, b"#x\r\n"),
    "reply bad double": (False, b",1.2.3\r\n"),
    "reply null with data": (False, b"_x\r\n"),
    "reply leading zero length": (False, b"$03\r\nabc\r\n"),
    "reply huge length": (False, b"$99999999999\r\n"),
    "reply bulk shorter than its length": (False, b"$4\r\nabc\r\n"),
    "reply http": (False, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_input_is_counted_and_skipped(case):
    is_request, garbage = MALFORMED[case]
    valid = command("GET", "k") + command("PING") if is_request else bulk("v") + simple("PONG")
    stream = garbage + valid
    msgs, parser = parse(stream, is_request)
    assert len(msgs) == 2, msgs
    assert parser.parse_errors == 1 and parser.resyncs >= 1
    parser = RespParser(is_request)
    byte_by_byte = [m for i in range(len(stream)) for m in parser.feed(stream[i : i + 1], i)]
    assert [m.value for m in byte_by_byte] == [m.value for m in msgs]
    assert parser.parse_errors == 1


def _mutated(rng: random.Random, data: bytes) -> bytes:
    buf, at = bytearray(data), rng.randrange(len(data) + 1)
    change = rng.randrange(3)
    if change == 0:
        buf[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    elif change == 1:
        del buf[at : at + rng.randint(1, 8)]
    elif buf:
        buf[min(at, len(buf) - 1)] = rng.randrange(256)
    return bytes(buf)


def test_mutated_streams_with_gaps_never_raise_and_stay_bounded():
    rng = random.Random(5)
    for _ in range(300):
        trace, t = RedisTrace(rng.choice((4, 1024))), 0
        for requests, replies in rng.choices(list(SPLIT_CASES.values()), k=4):
            for request_side, data in ((True, b"".join(requests)), (False, b"".join(replies))):
                data, t = _mutated(rng, data) if rng.random() < 0.3 else data, t + 10
                for at in range(0, len(data), 7):
                    if rng.random() < 0.03:
                        trace.on_gap(request_side, 7, t)
                    else:
                        trace.on_bytes(request_side, data[at : at + 7], t)
        trace.on_close(t)
        for row in trace.take_rows():
            assert isinstance(row["resp"], str) and row["latency"] >= 0
            assert isinstance(json.loads(row["req_args"]), list)
        assert max(trace.requests.buffered_bytes, trace.replies.buffered_bytes) <= LINE_LIMIT


def test_false_starts_after_a_gap_are_not_errors():
    parser = RespParser(is_request=False)
    parser.gap(10, 1)
    junk = "+ a list item •\r\n:1x\r\n$-2\r\n*3\r\nno\r\n-lowercase error\r\n".encode() * 20
    msgs = [m for i in range(0, len(junk), 5) for m in parser.feed(junk[i : i + 5], 2)]
    msgs += parser.feed(b"\r\n" + integer(7), 3)
    assert [render_reply(m.value) for m in msgs] == ["(integer) 7"]
    assert parser.parse_errors == 0


def test_candidate_that_is_no_message_is_not_an_error():
    parser = RespParser(is_request=True)
    parser.gap(10, 1)
    msgs = parser.feed(b"*2\r\n$3\r\nGET\r\n:oops\r\n" + command("PING"), 2)
    assert [command_of(m).name for m in msgs] == ["PING"]
    assert parser.parse_errors == 0


# Resource limits


def test_large_value_is_counted_not_buffered():
    parser = RespParser(is_request=False, value_limit=64)
    assert parser.feed(b"$%d\r\n" % (100 * 65536), 0) == []
    for i in range(100):
        assert parser.feed(b"z" * 65536, i) == []
        assert parser.buffered_bytes == 0
    (msg,) = parser.feed(b"\r\n", 101)
    assert (msg.value.value, msg.value.size) == (b"z" * 64, 100 * 65536)
    assert render_reply(msg.value) == '"%s…(6553600 bytes)"' % ("z" * 64)


def test_long_reply_keeps_a_bounded_start():
    data = array(*(bulk("e" * 100) for _ in range(1000)))
    (msg,), _ = parse(data, is_request=False, value_limit=50)
    kept = msg.value.value
    assert len(kept) <= MAX_KEPT_VALUES and sum(len(v.value) for v in kept) <= 4 * 50
    text = render_reply(msg.value)
    assert text.startswith('["%s…(100 bytes)",' % ("e" * 50))
    assert text.endswith(f"…({1000 - len(kept)} more)]")


def test_nesting_deeper_than_the_limit_is_malformed():
    deep = b"*1\r\n" * (MAX_DEPTH + 1) + integer(1)
    msgs, parser = parse(deep + OK, is_request=False)
    assert [render_reply(m.value) for m in msgs] == ["OK"]
    assert parser.parse_errors == 1
    (msg,), _ = parse(b"*1\r\n" * MAX_DEPTH + integer(1), is_request=False)
    assert render_reply(msg.value) == "[" * MAX_DEPTH + "1" + "]" * MAX_DEPTH


def test_endless_line_is_malformed_and_not_buffered():
    parser = RespParser(is_request=False)
    parser.feed(b"+", 0)
    for i in range(20):
        parser.feed(b"a" * 4096, i)
        assert parser.buffered_bytes <= LINE_LIMIT + 4096
    assert parser.parse_errors == 1
    assert [render_reply(m.value) for m in parser.feed(b"\r\n" + OK, 21)] == ["OK"]


# Through the socket tracer's connection


def test_connection_feeds_both_directions_in_time_order_with_uncaptured_bytes():
    conn = Connection(
        conn_id=3, upid="7:70", pid=7, family=2,
        local=Endpoint("127.0.0.1", 6379), remote=Endpoint("127.0.0.1", 50000), role=Role.SERVER,
    )
    conn.trace = RedisTrace(64)  # as learn_protocol makes it once Redis is registered
    recv, send = conn.streams[Direction.RECV], conn.streams[Direction.SEND]
    big_set = command("SET", "big", "b" * 100_000)
    recv.add(0, len(big_set), big_set[:4096], 100)  # past the capture limit: counted, not copied
    send.add(0, len(OK), OK, 150)
    get = command("GET", "big")
    recv.add(len(big_set), len(get), get, 200)
    send.add(len(OK), 100_011, bulk("b" * 100_000)[:4096], 250)
    conn.feed_trace()
    rows = conn.trace.take_rows()
    assert [(r["req_cmd"], r["time_ns"], r["latency"]) for r in rows] == [("SET", 100, 50), ("GET", 200, 50)]
    assert json.loads(rows[0]["req_args"]) == ["big", "b" * 64 + "…(100000 bytes)"]
    assert rows[1]["resp"] == '"%s…(100000 bytes)"' % ("b" * 64)
    assert conn.take_new_parse_errors() == 0


# The table


def test_schema_has_the_shared_columns_and_one_per_row_key():
    schemas = load_schema_dir(Path(__file__).parents[2] / "schemas")
    redis, http = schemas["redis_events"], schemas["http_events"]
    shared = http.column_names[: http.column_names.index("conn_id") + 1]
    assert redis.columns[: len(shared)] == http.columns[: len(shared)]
    (row,) = converse([(command("GET", "k"), bulk("v"))])
    assert redis.column_names[len(shared) :] == [key for key in row if key != "time_ns"]
    assert RedisTrace.table == "redis_events"
    assert RedisTrace(512).parse_errors == 0  # the connector passes its body limit
