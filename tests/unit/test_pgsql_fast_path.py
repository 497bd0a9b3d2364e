"""The PostgreSQL decoder's shortcuts against its general path.

The parser takes the whole messages of a framed stream straight from the
syscall's bytes (`_take_whole_messages`) and leaves the rest to its step
loop; the stitcher reads whole DataRows in one call, keeps the last
RowDescription and CommandComplete of a connection decoded, and adds an
answer's results to the call waiting without its dispatch. With the
shortcuts disabled every byte and message takes the general path, and the
two must agree on everything a caller can see, whatever the chunking, gaps
and garbage."""

from __future__ import annotations

import random

import pytest

from tests.unit.helpers import Call, parser_messages, random_calls, trace_rows
from tests.unit.test_pgsql import (
    ASYNCPG_EXECUTE,
    ASYNCPG_PREPARE,
    BAD_PARSE,
    CONNECT,
    EMPTY_QUERY,
    INT4,
    NOPE,
    PSYCOPG,
    SCRIPT,
    SELECT_1,
    SYNC,
    TERMINATE,
    TEXT,
    complete,
    data_row,
    error,
    in_step,
    message,
    query,
    ready,
    row_description,
)
from tracedb.protocols import pgsql
from tracedb.protocols.pgsql import PgsqlParser, PgsqlTrace

MANY_ROWS = (
    query("select v from t"),
    row_description(("v", TEXT)) + b"".join(data_row(b"v" * n, None) for n in range(0, 300, 20))
    + complete("SELECT 15") + ready(),
)
NOTICED = (
    query("select 2"),
    error("00000", "hi", severity="NOTICE", tag="N") + row_description(("n", INT4)) + data_row(b"2")
    + complete("SELECT 1") + ready(),
)
EXCHANGES = [SELECT_1, NOPE, SCRIPT, PSYCOPG, ASYNCPG_PREPARE, ASYNCPG_EXECUTE, BAD_PARSE, MANY_ROWS, NOTICED,
             (query(""), EMPTY_QUERY + ready()), (SYNC, ready())]


@pytest.fixture
def general_path_only(monkeypatch):
    """Every byte through the parser's steps, every message through the stitcher's general path."""
    monkeypatch.setattr(PgsqlParser, "_at_boundary", lambda self: False)
    monkeypatch.setattr(pgsql, "_whole_row", lambda payload: None)
    monkeypatch.setattr(pgsql.PgsqlStitcher, "_decode_repeated", lambda self, msg: self._decode(False, msg))
    monkeypatch.setattr(pgsql, "_FILLING", {})


def random_session(rng: random.Random) -> list[Call]:
    """A session's calls (see helpers.random_calls), mostly from its startup on."""
    exchanges = (list(CONNECT) if rng.random() < 0.7 else []) + rng.choices(EXCHANGES, k=rng.randrange(1, 12))
    if rng.random() < 0.2:
        exchanges.append((TERMINATE, b""))
    return random_calls(rng, exchanges)


def what_the_trace_shows(calls, body_limit: int) -> tuple:
    trace = PgsqlTrace(body_limit)
    return trace_rows(trace, calls), trace.parse_errors, trace.encrypted


def what_the_parser_shows(calls, is_request: bool) -> tuple:
    parser = PgsqlParser(is_request)
    seen = [[(m.tag, m.payload, m.size, m.start_ns, m.end_ns) for m in msgs]
            for msgs in parser_messages(parser, calls, is_request)]
    return seen, parser.parse_errors, parser.resyncs, parser.truncated, parser.stopped, parser.buffered_bytes


@pytest.mark.parametrize("seed", range(8))
def test_shortcuts_and_general_path_agree(seed, request):
    rng = random.Random(seed)
    sessions = [(random_session(rng), rng.choice([0, 8, 1024])) for _ in range(40)]
    fast = [(what_the_trace_shows(calls, limit), what_the_parser_shows(calls, True),
             what_the_parser_shows(calls, False)) for calls, limit in sessions]
    request.getfixturevalue("general_path_only")
    general = [(what_the_trace_shows(calls, limit), what_the_parser_shows(calls, True),
                what_the_parser_shows(calls, False)) for calls, limit in sessions]
    assert fast == general


def test_payloads_over_the_kept_limit_agree(monkeypatch, request):
    monkeypatch.setattr(pgsql, "MAX_KEPT", 40)  # rows and statements longer than that take the long-payload step
    rng = random.Random(9)
    sessions = [random_session(rng) for _ in range(100)]
    fast = [what_the_trace_shows(calls, 1024) for calls in sessions]
    request.getfixturevalue("general_path_only")
    assert fast == [what_the_trace_shows(calls, 1024) for calls in sessions]


# The parser's fast path


def no_steps(self, done):
    raise AssertionError("the step loop ran")


def test_whole_messages_of_a_framed_stream_skip_the_steps(monkeypatch):
    parser = in_step(is_request=False)
    monkeypatch.setattr(PgsqlParser, "_run", no_steps)
    msgs = parser.feed(SELECT_1[1] + SCRIPT[1], 7)
    assert "".join(m.tag for m in msgs) == "TDCZ" + "CCTDDCCZ"
    assert {(m.start_ns, m.end_ns) for m in msgs} == {(7, 7)}  # one syscall, one time
    assert msgs[1].payload == data_row(b"1")[5:]
    assert parser.buffered_bytes == 0


def test_a_message_spanning_syscalls_then_whole_ones():
    answer = SELECT_1[1] + SELECT_1[1]
    parser = in_step(is_request=False)
    assert [m.tag for m in parser.feed(answer[:40], 1)] == ["T"]  # and the start of the DataRow
    msgs = parser.feed(answer[40:], 2)
    assert [(m.tag, m.start_ns, m.end_ns) for m in msgs] == [
        ("D", 1, 2), ("C", 2, 2), ("Z", 2, 2), ("T", 2, 2), ("D", 2, 2), ("C", 2, 2), ("Z", 2, 2)
    ]
    assert parser.buffered_bytes == 0


def test_every_cut_in_three_of_a_framed_stream():
    stream = response_of(SELECT_1, NOPE, SELECT_1)
    parser = in_step(is_request=False)
    one_by_one = [(m.tag, m.payload) for i in range(len(stream)) for m in parser.feed(stream[i : i + 1], i)]
    for first in range(len(stream) + 1):
        for second in range(first, len(stream) + 1):
            parser = in_step(is_request=False)
            pieces = (stream[:first], stream[first:second], stream[second:])
            msgs = [m for time_ns, piece in enumerate(pieces) for m in parser.feed(piece, time_ns)]
            assert [(m.tag, m.payload) for m in msgs] == one_by_one, (first, second)
            at = 0
            for msg in msgs:  # each takes the times of the pieces holding its first and last bytes
                end = at + 5 + msg.size
                assert (msg.start_ns, msg.end_ns) == (piece_at(at, first, second), piece_at(end - 1, first, second))
                at = end


def response_of(*exchanges) -> bytes:
    return b"".join(answer for _, answer in exchanges)


def piece_at(offset: int, first: int, second: int) -> int:
    return 0 if offset < first else 1 if offset < second else 2


def test_a_bad_header_among_whole_messages_goes_to_the_steps():
    parser = in_step(is_request=True)
    msgs = parser.feed(query("select 1") + b"Q\x7f\xff\xff\xff" + query("select 2"), 1)
    assert [m.payload for m in msgs] == [b"select 1\x00", b"select 2\x00"]
    assert (parser.parse_errors, parser.resyncs) == (1, 1)


def test_after_a_gap_a_header_must_check_out_again():
    # A plausible DataRow header whose payload is no DataRow: the fast path
    # would take it; after a gap only a message that decodes is taken.
    parser = in_step(is_request=False)
    parser.gap(100, 1)
    msgs = parser.feed(message("D", b"\x00\x05xx") + ready(), 2)
    assert [m.tag for m in msgs] == ["Z"]
    assert parser.parse_errors == 0


def test_terminate_inside_a_syscall_stops_the_requests():
    parser = in_step(is_request=True)
    msgs = parser.feed(query("select 1") + TERMINATE + query("select 2"), 1)
    assert [m.tag for m in msgs] == ["Q", "X"]
    assert parser.stopped and parser.feed(query("select 3"), 2) == []


# The stitcher's shortcuts


def run_answers(*exchanges, body_limit: int = 1024) -> tuple[list[dict], PgsqlTrace]:
    trace = PgsqlTrace(body_limit)
    for turn, (request, answer) in enumerate(exchanges):
        trace.on_bytes(True, request, 10 * turn)
        trace.on_bytes(False, answer, 10 * turn + 5)
    return trace.take_rows(), trace


def test_a_new_row_description_or_tag_replaces_the_kept_one():
    other = (query("select b"), row_description(("b", TEXT)) + data_row(b"x") + complete("SELECT 1") + ready())
    two = (query("select a, 2"), row_description(("a", INT4)) + data_row(b"1") + data_row(b"2")
           + complete("SELECT 2") + ready())
    rows, trace = run_answers(SELECT_1, SELECT_1, other, SELECT_1, two)
    assert [r["resp"] for r in rows] == [
        "SELECT 1\n(?column?)\n(1)", "SELECT 1\n(?column?)\n(1)", "SELECT 1\n(b)\n('x')", "SELECT 1\n(?column?)\n(1)",
        "SELECT 2\n(a)\n(1)\n(2)",
    ]
    assert trace.parse_errors == 0


def test_a_malformed_repeated_message_is_counted_every_time():
    bad_tag = message("C", b"SELECT 1")  # no terminating NUL
    answer = (query("select 1"), row_description(("n", INT4)) + data_row(b"1") + bad_tag + ready())
    rows, trace = run_answers(answer, answer)
    assert [r["resp"] for r in rows] == ["?\n(n)\n(1)"] * 2
    assert trace.parse_errors == 2


def test_a_data_row_that_is_not_whole_is_decoded_as_before():
    bad_row = message("D", b"\x00\x02" + b"\x00\x00\x00\x01x")  # announces two values, holds one
    answer = row_description(("n", TEXT)) + bad_row + data_row(b"y") + complete("SELECT 2") + ready()
    rows, trace = run_answers((query("select n"), answer))
    assert rows[0]["resp"] == "SELECT 2\n(n)\n('y')"
    assert trace.parse_errors == 1


def test_a_query_whose_text_was_lost_makes_no_row():
    lost = query("select 2")
    trace = PgsqlTrace()
    trace.on_bytes(True, SELECT_1[0], 1)
    trace.on_bytes(False, SELECT_1[1], 2)
    trace.on_bytes(True, lost[:5], 3)  # the header; the text is a gap
    trace.on_gap(True, len(lost) - 5, 3)
    trace.on_bytes(False, SELECT_1[1], 4)
    assert [r["req"] for r in trace.take_rows()] == ["select 1"]
    assert trace.parse_errors == 1  # its answer's ReadyForQuery answered nothing seen
