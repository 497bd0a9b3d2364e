"""The Redis decoder's fast path against its general path.

The parser takes the whole messages of usual shapes (a command array; a
reply that is a line, an integer, a bulk string or an array of bulk strings)
that begin a syscall's bytes at a message boundary straight from them
(`_take_whole_messages`) and leaves the rest to its step loop. With the fast
path disabled every byte takes the step loop, and the two must agree on
everything a caller can see, whatever the chunking, gaps and garbage."""

from __future__ import annotations

import json
import random

import pytest

from tests.unit.helpers import parser_messages, random_calls, trace_rows
from tests.unit.test_redis import (
    HELLO_REPLY,
    LINE_LIMIT,
    MALFORMED,
    NIL,
    OK,
    SPLIT_CASES,
    UNKNOWN_FOO,
    array,
    bulk,
    command,
    confirmation,
    error,
    integer,
    message,
    push,
    simple,
)
from tracedb.protocols.redis import (
    MAX_KEPT_VALUES,
    RedisTrace,
    RespParser,
    command_of,
    render_reply,
)

RESP3_PUBSUB = (
    command("HELLO", "3") + command("SUBSCRIBE", "c") + command("UNSUBSCRIBE", "c"),
    HELLO_REPLY + confirmation("subscribe", "c", 1, resp3=True) + message("c", "m", resp3=True)
    + push(bulk("invalidate"), array(bulk("k"))) + confirmation("unsubscribe", "c", 0, resp3=True),
)
# Replies the fast path must leave to the steps, each as a GET's reply:
# malformed, or framed otherwise than by whole lines.
ODD_REPLIES = [
    bulk(b"x\r\ny"),  # a CRLF inside a string
    array(bulk("a"), bulk(b"b\r\n")),
    b"$03\r\nabc\r\n",  # a length as no server writes it
    b"$4\r\nabc\r\n",  # a string shorter than its length
    b"+O\nK\r\n",  # a line ends at its LF
    b"-O\rK\r\n",  # and holds no CR
    b":123456789012345678901\r\n",  # an integer longer than any
    b":1x\r\n",
    b"*2\r\n$1\r\na\r\n",  # an array short of an element...
    bulk("b") + bulk("c"),  # ...completed by the next reply
    simple("x" * (LINE_LIMIT - 3)),  # the longest line there may be
    simple("x" * (LINE_LIMIT - 2)),  # one byte too long
    array(bulk("a"), NIL),  # an element of another shape
    b"*0\r\n",
    b"*-1\r\n",
    b"%1\r\n$1\r\nk\r\n$1\r\nv\r\n",
]
EXCHANGES = [(b"".join(requests), b"".join(replies)) for requests, replies in SPLIT_CASES.values()] + [
    (command("SET", "k", b"\na\rb\r"), OK),  # a lone CR or LF is just a byte
    (command("SET", "k", b"a\r\nb"), OK),
    (command("SET", "k", ""), OK),
    (command("GET", "k"), bulk("")),
    (command("SET", "k", "v" * 2000), OK),
    (command("GET", "k"), bulk("v" * 2000)),
    (command("DEL", *range(300)), integer(300)),
    (command("MGET", "a", "b", "c"), array(bulk("a"), NIL, bulk("c"))),
    (command("LRANGE", "l", 0, -1), array(*(bulk(n) for n in range(300)))),
    (command("INCRBY", "n", -5), integer(-5)),
    (command("GET", "k"), error("WRONGTYPE Operation against a key")),
    (command("PING") + command("PING"), simple("PONG") + simple("")),
    (command("PING") + b"FOO bar\r\n", simple("PONG") + UNKNOWN_FOO),
    (b"*1\r\n$03\r\nGET\r\n" + command("PING"), simple("PONG")),
    (command("CONFIG", "SET", "requirepass", "s3cret") + command("AUTH", "s3cret"), OK + OK),
    (command("CLIENT", "REPLY", "OFF") + command("SET", "a", "1") + command("CLIENT", "REPLY", "ON"), OK),
    (command("MONITOR"), OK + simple('1700000000.1 [0 127.0.0.1:5000] "get" "k"')),
    (command("RESET"), simple("RESET")),
    RESP3_PUBSUB,
    *((command("GET", "k"), reply) for reply in ODD_REPLIES),
    *((garbage, b"") if is_request else (b"", garbage) for is_request, garbage in MALFORMED.values()),
]


@pytest.fixture
def general_path_only(monkeypatch):
    """Every byte through the parser's steps."""
    monkeypatch.setattr(RespParser, "_at_boundary", lambda self: False)


def both_paths(request, show) -> tuple:
    """What show() gives with the fast path, and with the general path only."""
    fast = show()
    request.getfixturevalue("general_path_only")
    return fast, show()


def what_the_trace_shows(calls, value_limit: int) -> tuple:
    trace = RedisTrace(value_limit)
    return trace_rows(trace, calls), trace.parse_errors, trace.stitcher.dropped_commands


def what_the_parser_shows(calls, is_request: bool, value_limit: int) -> tuple:
    parser = RespParser(is_request, value_limit)
    seen = parser_messages(parser, calls, is_request)
    return seen, parser.parse_errors, parser.resyncs, parser.buffered_bytes, parser.synchronised


def what_all_show(sessions) -> list:
    return [
        (what_the_trace_shows(calls, limit), what_the_parser_shows(calls, True, limit),
         what_the_parser_shows(calls, False, limit))
        for calls, limit in sessions
    ]


@pytest.mark.parametrize("seed", range(8))
def test_fast_and_general_paths_agree(seed, request):
    rng = random.Random(seed)
    sessions = [(random_calls(rng, rng.choices(EXCHANGES, k=rng.randrange(1, 12))), rng.choice([0, 3, 16, 1024]))
                for _ in range(40)]
    fast, general = both_paths(request, lambda: what_all_show(sessions))
    assert fast == general


@pytest.mark.parametrize("reply", ODD_REPLIES, ids=range(len(ODD_REPLIES)))
def test_odd_replies_in_one_syscall_are_judged_by_the_steps(reply, request):
    def show():
        parser = RespParser(is_request=False)
        return parser.feed(OK + reply + OK, 1), parser.parse_errors, parser.buffered_bytes

    fast, general = both_paths(request, show)
    assert fast == general


def test_values_past_the_limits_are_cut_as_the_steps_cut_them(request):
    sent = command("SET", "key", "value") + command("RPUSH", "l", *range(MAX_KEPT_VALUES + 10))
    received = bulk("value") + array(*(bulk(n) for n in range(MAX_KEPT_VALUES + 10)))
    def show():
        return RespParser(True, 4).feed(sent, 1), RespParser(False, 4).feed(received, 1)

    fast, general = both_paths(request, show)
    assert fast == general
    assert [item.value for item in fast[0][0].value.value] == [b"SET", b"key", b"valu"]
    assert len(fast[1][1].value.value) == MAX_KEPT_VALUES


# The fast path alone


def no_steps(self, done):
    raise AssertionError("the step loop ran")


def test_pipelined_commands_in_one_syscall_skip_the_steps(monkeypatch):
    parser = RespParser(is_request=True)
    monkeypatch.setattr(RespParser, "_run", no_steps)
    msgs = parser.feed(command("SET", "k", "v") + command("GET", "k") + command("PING"), 7)
    assert [command_of(m).name for m in msgs] == ["SET", "GET", "PING"]
    assert [item.value for item in msgs[0].value.value] == [b"SET", b"k", b"v"]
    assert {(m.start_ns, m.end_ns, m.lost_before_ns) for m in msgs} == {(7, 7, None)}  # one syscall, one time
    assert parser.buffered_bytes == 0


def test_replies_of_the_usual_shapes_skip_the_steps(monkeypatch):
    parser = RespParser(is_request=False)
    monkeypatch.setattr(RespParser, "_run", no_steps)
    replies = OK + error("ERR no") + integer(-3) + bulk("v") + bulk("") + NIL + array(bulk("a"), bulk("b"))
    texts = [render_reply(m.value) for m in parser.feed(replies, 7)]
    assert texts == ["OK", "ERR no", "(integer) -3", '"v"', '""', "(nil)", '["a","b"]']
    assert parser.buffered_bytes == 0


def test_a_message_spanning_syscalls_then_whole_ones():
    parser = RespParser(is_request=False)
    assert parser.feed(b"$10\r\n01234", 1) == []
    msgs = parser.feed(b"56789\r\n" + OK, 2)
    assert [(m.value.value, m.start_ns, m.end_ns) for m in msgs] == [(b"0123456789", 1, 2), (b"OK", 2, 2)]
    assert [(m.value.value, m.start_ns) for m in parser.feed(OK + bulk("v"), 3)] == [(b"OK", 3), (b"v", 3)]
    assert parser.buffered_bytes == 0


def test_whole_commands_then_a_partial_one():
    parser = RespParser(is_request=True)
    last = command("SET", "k", "v")
    msgs = parser.feed(command("GET", "a") + command("GET", "b") + last[:9], 1)
    assert [command_of(m).args for m in msgs] == [["a"], ["b"]]
    (msg,) = parser.feed(last[9:], 2)
    assert (command_of(msg).args, msg.start_ns, msg.end_ns) == (["k", "v"], 1, 2)


def test_a_string_holding_a_crlf_and_what_follows_go_to_the_steps():
    parser = RespParser(is_request=True)
    msgs = parser.feed(command("GET", "a") + command("SET", "k", b"x\r\ny") + command("GET", "b"), 1)
    assert [command_of(m).args for m in msgs] == [["a"], ["k", "x\r\ny"], ["b"]]
    assert parser.parse_errors == 0


def test_an_unknown_inline_command_after_whole_ones_is_taken():
    # A stream may be joined mid-message, so an inline command that is no
    # known one is taken only once a message has ended where expected.
    parser = RespParser(is_request=True)
    msgs = parser.feed(command("PING") + b"FOO bar\r\n", 1)
    assert [command_of(m).name for m in msgs] == ["PING", "FOO"]
    assert parser.parse_errors == 0


def test_after_a_gap_whole_messages_wait_for_the_resynchronisation():
    parser = RespParser(is_request=False)
    parser.feed(OK, 1)
    parser.gap(5, 2)
    msgs = parser.feed(b"lost tail\r\n" + OK + integer(1), 3)
    assert [(m.value.value, m.lost_before_ns) for m in msgs] == [(b"OK", 2), (1, None)]
    assert parser.parse_errors == 0
    assert [(m.value.value, m.lost_before_ns) for m in parser.feed(OK, 4)] == [(b"OK", None)]


def test_arguments_as_json_are_what_json_dumps_writes():
    args = ['say "hi"', "back\\slash", "tab\tnew\nline\x01", "é\u2028", "\x7f", "…", ""]
    (msg,) = RespParser(is_request=True).feed(command("SET", *args), 1)
    assert command_of(msg).args_json() == json.dumps(args, ensure_ascii=False, separators=(",", ":"))
    (msg,) = RespParser(is_request=True).feed(command("PING"), 1)
    assert command_of(msg).args_json() == "[]"
