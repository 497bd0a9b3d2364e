import json
import random

import pytest

from tracedb.protocols.http import (
    HEAD_LIMIT,
    MAX_HEADERS,
    HttpHead,
    HttpMessage,
    HttpParser,
    HttpStitcher,
    headers_json,
    latency_ns,
)

GET = b"GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n"
POST_BODY = b'{"name": "widget", "count": 3}'
POST = (
    b"POST /api/items HTTP/1.1\r\nHost: example.com\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(POST_BODY), POST_BODY)
)
CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"
    b"5;name=value\r\nhello\r\n7 ; ext\r\n, world\r\n0\r\nExpires: never\r\nX-Sum: 1\r\n\r\n"
)
HEAD_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nContent-Type: text/html\r\n\r\n"
NO_CONTENT = b"HTTP/1.1 204 No Content\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\n\r\n"
NOT_MODIFIED = b'HTTP/1.1 304 Not Modified\r\nETag: "abc"\r\nContent-Length: 99\r\n\r\n'
UNTIL_CLOSE = b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n<html>bye</html>"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def request(method: str = "GET", path: str = "/", body: bytes = b"") -> bytes:
    length = b"Content-Length: %d\r\n" % len(body) if body else b""
    return b"%s %s HTTP/1.1\r\nHost: h\r\n%s\r\n%s" % (method.encode(), path.encode(), length, body)


def response(status: int = 200, body: bytes = b"") -> bytes:
    return b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body)


def parse(data: bytes, is_request: bool, methods: tuple[str, ...] = (), **kw) -> tuple[list[HttpMessage], HttpParser]:
    parser = HttpParser(is_request, **kw)
    for method in methods:
        parser.expect_response_to(method)
    return parser.feed(data, 1), parser


def untimed(msg: HttpMessage) -> HttpMessage:
    return msg._replace(start_ns=0, end_ns=0)


# Start lines and header fields


def test_request_fields():
    (msg,), parser = parse(GET, is_request=True)
    assert (msg.is_request, msg.method, msg.path, msg.major, msg.minor) == (True, "GET", "/index.html?q=1", 1, 1)
    assert msg.headers == [("Host", "example.com"), ("Accept", "*/*")]
    assert (msg.body, msg.body_size, msg.chunked) == (b"", 0, False)
    assert parser.parse_errors == 0


def test_post_body_by_content_length():
    (msg,), _ = parse(POST, is_request=True)
    assert (msg.method, msg.body, msg.body_size) == ("POST", POST_BODY, len(POST_BODY))


@pytest.mark.parametrize(
    "line, status, reason",
    [
        (b"HTTP/1.1 404 Not Found", 404, "Not Found"),
        (b"HTTP/1.1 500 It broke, badly", 500, "It broke, badly"),
        (b"HTTP/1.1 200 ", 200, ""),
        (b"HTTP/1.1 200", 200, ""),
    ],
)
def test_status_line(line, status, reason):
    (msg,), _ = parse(line + b"\r\nContent-Length: 0\r\n\r\n", is_request=False)
    assert (msg.is_request, msg.status, msg.reason, msg.major, msg.minor) == (False, status, reason, 1, 1)


def test_http_1_0_version():
    (msg,), _ = parse(b"GET / HTTP/1.0\r\n\r\n", is_request=True)
    assert (msg.major, msg.minor) == (1, 0)


def test_bare_lf_line_ends():
    data = b"POST /a HTTP/1.1\nHost: h\nContent-Length: 3\n\nabcGET /b HTTP/1.1\n\n"
    msgs, parser = parse(data, is_request=True)
    assert [(m.path, m.body) for m in msgs] == [("/a", b"abc"), ("/b", b"")]
    assert msgs[0].headers == [("Host", "h"), ("Content-Length", "3")]
    assert parser.parse_errors == 0


def test_header_names_kept_as_sent_but_matched_without_case():
    data = b"HTTP/1.1 200 OK\r\ncontent-LENGTH: 3\r\nX-Weird-Case: v\r\n\r\nabc" + OK
    msgs, _ = parse(data, is_request=False)
    assert msgs[0].headers == [("content-LENGTH", "3"), ("X-Weird-Case", "v")]
    assert [m.body for m in msgs] == [b"abc", b"ok"]


def test_header_value_whitespace_is_trimmed():
    (msg,), _ = parse(b"GET / HTTP/1.1\r\nHost:   h  \r\nEmpty:\r\n\r\n", is_request=True)
    assert msg.headers == [("Host", "h"), ("Empty", "")]


def test_obsolete_line_folding_is_malformed():
    folded = b"GET /folded HTTP/1.1\r\nX-Long: a\r\n  continued\r\n\r\n"
    msgs, parser = parse(folded + request(path="/next"), is_request=True)
    assert [m.path for m in msgs] == ["/next"]
    assert parser.parse_errors == 1


def test_empty_lines_before_a_request_are_ignored():
    msgs, parser = parse(request(path="/a") + b"\r\n\r\n" + request(path="/b"), is_request=True)
    assert [m.path for m in msgs] == ["/a", "/b"]
    assert parser.parse_errors == 0


# Body length (RFC 9112 §6.3)


def test_chunked_body_with_extensions_and_trailer():
    (msg,), parser = parse(CHUNKED, is_request=False)
    assert (msg.chunked, msg.body, msg.body_size) == (True, b"hello, world", 12)
    assert ("Expires", "never") not in msg.headers  # trailers are not header fields
    assert parser.parse_errors == 0


def test_chunked_takes_precedence_over_content_length():
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n"
    data = head + b"3\r\nabc\r\n0\r\n\r\n" + OK
    msgs, _ = parse(data, is_request=False)
    assert [(m.chunked, m.body) for m in msgs] == [(True, b"abc"), (False, b"ok")]


def test_chunked_request():
    data = b"PUT /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\ndata\r\n0\r\n\r\n" + request(path="/b")
    msgs, _ = parse(data, is_request=True)
    assert [(m.path, m.body, m.chunked) for m in msgs] == [("/up", b"data", True), ("/b", b"", False)]


def test_request_with_unknown_final_coding_is_malformed():
    data = b"POST /x HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n" + request(path="/b")
    msgs, parser = parse(data, is_request=True)
    assert [m.path for m in msgs] == ["/b"]
    assert parser.parse_errors == 1


def test_response_with_unknown_final_coding_reads_until_close():
    parser = HttpParser(is_request=False)
    assert parser.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzzz", 1) == []
    (msg,) = parser.close(2)
    assert msg.body == b"zzz"


@pytest.mark.parametrize("lengths", [[b"5, 5"], [b"5", b"5"]])
def test_equal_duplicate_content_lengths_are_accepted(lengths):
    fields = b"".join(b"Content-Length: %s\r\n" % v for v in lengths)
    (msg,), parser = parse(b"HTTP/1.1 200 OK\r\n%s\r\nhello" % fields, is_request=False)
    assert msg.body == b"hello" and parser.parse_errors == 0


@pytest.mark.parametrize("lengths", [[b"5, 6"], [b"5", b"6"]])
def test_differing_duplicate_content_lengths_are_malformed(lengths):
    fields = b"".join(b"Content-Length: %s\r\n" % v for v in lengths)
    msgs, parser = parse(b"HTTP/1.1 200 OK\r\n%s\r\nhello\r\n%s" % (fields, OK), is_request=False)
    assert [m.body for m in msgs] == [b"ok"]
    assert parser.parse_errors == 1


def test_request_without_length_has_no_body():
    msgs, _ = parse(b"DELETE /x HTTP/1.1\r\n\r\n" + request(path="/y"), is_request=True)
    assert [(m.method, m.body_size) for m in msgs] == [("DELETE", 0), ("GET", 0)]


def test_response_without_length_reads_until_close():
    parser = HttpParser(is_request=False)
    assert parser.feed(UNTIL_CLOSE[:50], 10) == []
    assert parser.feed(UNTIL_CLOSE[50:], 20) == []
    (msg,) = parser.close(99)
    assert (msg.status, msg.body, msg.body_size) == (200, b"<html>bye</html>", 16)
    assert (msg.start_ns, msg.end_ns) == (10, 20)  # the last byte's time, not the close's


def test_close_drops_a_message_cut_short():
    parser = HttpParser(is_request=False)
    assert parser.feed(response(body=b"0123456789")[:-3], 1) == []
    assert parser.close(2) == []
    assert parser.parse_errors == 0


@pytest.mark.parametrize("message", [HEAD_RESPONSE, NO_CONTENT, NOT_MODIFIED])
def test_responses_without_body(message):
    msgs, _ = parse(message + OK, is_request=False, methods=("HEAD", "GET"))
    assert [(m.body, m.body_size) for m in msgs] == [(b"", 0), (b"ok", 2)]


def test_head_response_is_known_from_the_request_order():
    stream = response(body=b"abc") + HEAD_RESPONSE + response(body=b"xyz")
    msgs, _ = parse(stream, is_request=False, methods=("GET", "HEAD", "GET"))
    assert [m.body for m in msgs] == [b"abc", b"", b"xyz"]


def test_response_with_no_method_known_is_not_taken_for_head():
    (msg,), _ = parse(response(body=b"abc"), is_request=False)
    assert msg.body == b"abc"


# Interim responses and protocol switches


def test_100_continue_is_parsed_but_not_paired():
    requests, _ = parse(
        b"POST /up HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\ndata", is_request=True
    )
    responses, _ = parse(b"HTTP/1.1 100 Continue\r\n\r\n" + response(201), is_request=False, methods=("POST",))
    assert [m.status for m in responses] == [100, 201]
    stitcher = HttpStitcher()
    stitcher.add_requests(requests)
    ((req, resp),) = stitcher.add_responses(responses)
    assert (req.path, resp.status) == ("/up", 201)
    assert stitcher.unmatched_responses == 0


def test_interim_response_leaves_the_method_to_the_final_one():
    stream = b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n" + HEAD_RESPONSE + OK
    msgs, _ = parse(stream, is_request=False, methods=("HEAD", "GET"))
    assert [(m.status, m.body) for m in msgs] == [(103, b""), (200, b""), (200, b"ok")]


def test_101_switches_both_directions_off():
    upgrade = b"GET /chat HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    requests, req_parser = parse(upgrade, is_request=True)
    switch = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
    responses, resp_parser = parse(switch + b"\x81\x05hello" + OK, is_request=False, methods=("GET",))
    assert [m.status for m in responses] == [101]
    assert resp_parser.switched
    assert resp_parser.feed(OK, 2) == []
    # The caller turns the request side off when it sees the response side switched.
    req_parser.switch_protocols()
    assert req_parser.feed(GET, 2) == []
    assert resp_parser.parse_errors == req_parser.parse_errors == 0
    assert resp_parser.buffered_bytes == req_parser.buffered_bytes == 0
    stitcher = HttpStitcher()
    stitcher.add_requests(requests)
    ((req, resp),) = stitcher.add_responses(responses)
    assert (req.path, resp.status) == ("/chat", 101)


def test_connect_success_opens_a_tunnel():
    tunnel = b"HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x01tls"
    msgs, parser = parse(tunnel, is_request=False, methods=("CONNECT",))
    assert [m.status for m in msgs] == [200]
    assert parser.switched and parser.parse_errors == 0


# Pipelining and keep-alive


def test_pipelined_requests_in_one_chunk_pair_in_order():
    requests, _ = parse(request(path="/1") + request("POST", "/2", b"body") + request(path="/3"), is_request=True)
    responses, _ = parse(response(200, b"a") + response(201, b"b") + response(404), is_request=False)
    stitcher = HttpStitcher()
    stitcher.add_requests(requests)
    pairs = stitcher.add_responses(responses)
    assert [(q.path, r.status) for q, r in pairs] == [("/1", 200), ("/2", 201), ("/3", 404)]
    assert stitcher.pending_requests == 0


def test_keep_alive_stream_of_many_messages():
    requests = [request(path=f"/{i}", body=b"x" * (i % 3)) for i in range(500)]
    stream = b"".join(requests)
    parser = HttpParser(is_request=True)
    msgs = []
    for i in range(0, len(stream), 97):
        msgs += parser.feed(stream[i : i + 97], i)
    assert [m.path for m in msgs] == [f"/{i}" for i in range(500)]
    assert [m.body_size for m in msgs] == [i % 3 for i in range(500)]
    assert parser.parse_errors == parser.resyncs == 0


# Splitting: any cut gives the same messages; only the timestamps follow the bytes

SPLIT_CASES = {
    "get": (True, (), GET, GET),
    "post": (True, (), POST, GET),
    "chunked": (False, (), CHUNKED, OK),
    "head": (False, ("HEAD", "GET"), HEAD_RESPONSE, OK),
    "204": (False, (), NO_CONTENT, OK),
    "304": (False, (), NOT_MODIFIED, OK),
}


@pytest.mark.parametrize("case", SPLIT_CASES)
def test_every_split_point_gives_the_same_messages(case):
    is_request, methods, message, follower = SPLIT_CASES[case]
    stream = message + follower
    whole, _ = parse(stream, is_request, methods)
    assert len(whole) == 2
    for cut in range(len(stream) + 1):
        parser = HttpParser(is_request)
        for method in methods:
            parser.expect_response_to(method)
        msgs = parser.feed(stream[:cut], 100) + parser.feed(stream[cut:], 200)
        assert [untimed(m) for m in msgs] == [untimed(m) for m in whole], cut
        first, second = msgs
        assert first.start_ns == (100 if cut > 0 else 200)
        assert first.end_ns == (100 if cut >= len(message) else 200)
        assert second.start_ns == (100 if cut > len(message) else 200)
        assert second.end_ns == (100 if cut == len(stream) else 200)
        assert parser.parse_errors == 0


@pytest.mark.parametrize("case", SPLIT_CASES)
def test_one_byte_per_feed_gives_the_same_messages(case):
    is_request, methods, message, follower = SPLIT_CASES[case]
    stream = message + follower
    whole, _ = parse(stream, is_request, methods)
    parser = HttpParser(is_request)
    for method in methods:
        parser.expect_response_to(method)
    msgs = [m for i in range(len(stream)) for m in parser.feed(stream[i : i + 1], i)]
    assert [untimed(m) for m in msgs] == [untimed(m) for m in whole]
    assert [(m.start_ns, m.end_ns) for m in msgs] == [(0, len(message) - 1), (len(message), len(stream) - 1)]


def test_every_split_point_of_a_response_read_until_close():
    (whole,) = parse(UNTIL_CLOSE, is_request=False)[1].close(0)
    for cut in range(len(UNTIL_CLOSE) + 1):
        parser = HttpParser(is_request=False)
        assert parser.feed(UNTIL_CLOSE[:cut], 100) + parser.feed(UNTIL_CLOSE[cut:], 200) == []
        (msg,) = parser.close(300)
        assert untimed(msg) == untimed(whole), cut
        assert (msg.start_ns, msg.end_ns) == (100 if cut else 200, 100 if cut == len(UNTIL_CLOSE) else 200)


def test_one_byte_per_feed_of_a_response_read_until_close():
    parser = HttpParser(is_request=False)
    assert [m for i, byte in enumerate(UNTIL_CLOSE) for m in parser.feed(bytes([byte]), i)] == []
    (msg,) = parser.close(10**9)
    assert (msg.body, msg.start_ns, msg.end_ns) == (b"<html>bye</html>", 0, len(UNTIL_CLOSE) - 1)


# Large bodies


def test_large_body_is_truncated_but_counted():
    body = bytes(range(256)) * 400  # 100 KiB
    stream = response(body=body) + OK
    parser = HttpParser(is_request=False, body_limit=1024)
    msgs = []
    for i in range(0, len(stream), 30_000):
        msgs += parser.feed(stream[i : i + 30_000], i)
        assert parser.buffered_bytes <= 30_000 + 1024
    assert [(m.body, m.body_size) for m in msgs] == [(body[:1024], len(body)), (b"ok", 2)]


def test_large_chunked_body_is_truncated_but_counted():
    chunk = b"z" * 40_000
    stream = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"9c40\r\n%s\r\n" % chunk * 3 + b"0\r\n\r\n"
    parser = HttpParser(is_request=False, body_limit=100)
    msgs = [m for i in range(0, len(stream), 30_000) for m in parser.feed(stream[i : i + 30_000], i)]
    assert [(m.body, m.body_size) for m in msgs] == [(b"z" * 100, 120_000)]


def test_body_past_the_limit_is_not_buffered():
    parser = HttpParser(is_request=True, body_limit=512)
    parser.feed(b"PUT /big HTTP/1.1\r\nContent-Length: 10000000\r\n\r\n", 0)
    for i in range(150):
        assert parser.feed(b"b" * 65536, i) == []
        assert parser.buffered_bytes <= 512


# Malformed input and resynchronisation

MALFORMED = {
    "garbage line": (True, b"\x00\x01 this is not http\r\n"),
    "binary without line end": (True, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
    "unknown method": (True, b"FETCH / HTTP/1.1\r\n\r\n"),
    "bad request version": (True, b"GET / HTTP/2.0\r\n\r\n"),
    "missing version": (True, b"GET /\r\n\r\n"),
    "space before colon": (True, b"GET / HTTP/1.1\r\nHost : h\r\n\r\n"),
    "negative content length": (True, b"POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\nhello"),
    "huge content length": (True, b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\nx"),
    "bad response version": (False, b"HTTP/1.x 200 OK\r\n\r\n"),
    "non-numeric status": (False, b"HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n"),
    "bad chunk size": (False, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
    "chunk longer than its size": (
        False,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n",
    ),
    "response garbage": (False, b"<html>stray body</html>\r\n"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_input_is_counted_and_skipped(case):
    is_request, garbage = MALFORMED[case]
    valid = request(path="/1") + request("POST", "/2", b"hello") if is_request else response(200, b"1") + response(404)
    msgs, parser = parse(garbage + valid, is_request)
    assert len(msgs) == 2, msgs
    assert parser.parse_errors >= 1 and parser.resyncs >= 1
    # Byte by byte, the same.
    parser = HttpParser(is_request)
    stream = garbage + valid
    byte_by_byte = [m for i in range(len(stream)) for m in parser.feed(stream[i : i + 1], i)]
    assert [untimed(m) for m in byte_by_byte] == [untimed(m) for m in msgs]
    assert parser.parse_errors >= 1


def test_resync_finds_a_message_that_began_inside_a_bad_one():
    cut_short = b"GET /lost HTTP/1.1\r\nHost: h\r\n"  # its blank line never came
    msgs, parser = parse(cut_short + request(path="/found"), is_request=True)
    assert [m.path for m in msgs] == ["/found"]
    assert parser.parse_errors == 1


def test_resync_finds_a_message_glued_to_the_bytes_before_it():
    # After a gap the tail of a lost body runs straight into the next message.
    parser = HttpParser(is_request=False)
    parser.gap(4096)
    msgs = parser.feed(b'..., "HTTP/1.0 is old", "done": true}' + response(201), 1)
    assert [m.status for m in msgs] == [201]
    assert parser.parse_errors == 0  # "HTTP/1.0 is old" was only a candidate


def test_false_candidates_are_not_errors():
    parser = HttpParser(is_request=True)
    parser.gap(10)
    junk = b"you GET what you PUT in; POST it\r\n" * 50
    msgs = [m for i in range(0, len(junk), 7) for m in parser.feed(junk[i : i + 7], i)]
    msgs += parser.feed(request(path="/real"), 1)
    assert [m.path for m in msgs] == ["/real"]
    assert (parser.parse_errors, parser.resyncs) == (0, 1)


# Gaps


def test_gap_drops_the_partial_message():
    first = request(path="/partial")
    half = len(first) // 2
    parser = HttpParser(is_request=True)
    assert parser.feed(first[:half], 1) == []
    parser.gap(100)
    msgs = parser.feed(first[half:] + request(path="/whole"), 2)
    assert [m.path for m in msgs] == ["/whole"]
    assert parser.resyncs == 1
    assert msgs[0].start_ns == 2


def test_gap_inside_a_known_length_body_keeps_the_message():
    # As when a body is sent with sendfile() or exceeds the capture limit.
    whole = response(body=b"a" * 1000)
    parser = HttpParser(is_request=False, body_limit=64)
    assert parser.feed(whole[:500], 1) == []
    assert parser.gap(300, 2) == []
    (first, second) = parser.feed(whole[800:] + response(404), 3)
    assert (first.status, first.body_size, first.body, first.end_ns) == (200, 1000, b"a" * 64, 3)
    assert second.status == 404
    assert parser.parse_errors == 0


def test_gap_ending_a_body_returns_the_message_and_resyncs():
    whole = response(body=b"a" * 1000)
    parser = HttpParser(is_request=False)
    assert parser.feed(whole[:500], 1) == []
    (msg,) = parser.gap(len(whole) - 500 + 40, 2)  # the body's end and 40 bytes of what followed
    assert (msg.body_size, msg.end_ns) == (1000, 2)
    assert [m.status for m in parser.feed(b"tail of a lost message" + response(404), 3)] == [404]


def test_gap_inside_a_chunk_keeps_the_message():
    body = b"5\r\nhello\r\n400\r\n" + b"x" * 1024 + b"\r\n0\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    stream = head + body
    cut = len(head) + 20
    parser = HttpParser(is_request=False)
    assert parser.feed(stream[:cut], 1) == []
    assert parser.gap(500, 2) == []
    (msg,) = parser.feed(stream[cut + 500 :], 3)
    assert (msg.body_size, msg.chunked) == (5 + 1024, True)


def test_gap_outside_a_body_drops_the_message():
    parser = HttpParser(is_request=False)
    assert parser.feed(response(body=b"a" * 10)[:10], 1) == []  # inside the status line
    assert parser.gap(5, 2) == []
    assert [m.status for m in parser.feed(b"...." + response(404), 3)] == [404]


def test_gap_at_a_message_boundary_loses_nothing_after_it():
    parser = HttpParser(is_request=True)
    assert len(parser.feed(request(path="/a"), 1)) == 1
    parser.gap(len(request(path="/lost")))
    assert [m.path for m in parser.feed(request(path="/b"), 2)] == ["/b"]


def test_gap_cutting_a_message_start_in_two():
    parser = HttpParser(is_request=False)
    parser.gap(10)
    assert parser.feed(b"HTT", 1) == []
    (msg,) = parser.feed(b"P/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 2)
    assert (msg.status, msg.start_ns, msg.end_ns) == (200, 1, 2)


# Resource limits


def test_oversized_header_section_is_malformed_and_not_buffered():
    parser = HttpParser(is_request=True)
    parser.feed(b"GET / HTTP/1.1\r\n", 0)
    field_line = b"X-Filler: " + b"f" * 1000 + b"\r\n"
    for i in range(100):
        parser.feed(field_line, i)
        assert parser.buffered_bytes <= HEAD_LIMIT + len(field_line)
    assert parser.parse_errors == 1
    assert [m.path for m in parser.feed(b"\r\n" + request(path="/next"), 101)] == ["/next"]


def test_endless_line_is_malformed_and_not_buffered():
    parser = HttpParser(is_request=True)
    parser.feed(b"GET /", 0)
    for i in range(40):
        parser.feed(b"a" * 4096, i)
        assert parser.buffered_bytes <= HEAD_LIMIT + 4096
    assert parser.parse_errors == 1
    assert [m.path for m in parser.feed(b"\r\n" + request(path="/next"), 41)] == ["/next"]


def test_too_many_header_fields_is_malformed():
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(MAX_HEADERS + 1))
    msgs, parser = parse(b"GET /many HTTP/1.1\r\n" + fields + b"\r\n" + request(path="/next"), is_request=True)
    assert [m.path for m in msgs] == ["/next"]
    assert parser.parse_errors == 1
    (msg,), _ = parse(b"GET /max HTTP/1.1\r\n" + fields.split(b"\r\n", 1)[1] + b"\r\n", is_request=True)
    assert len(msg.headers) == MAX_HEADERS


# The stitcher


def msg_at(start_ns: int, is_request: bool = True, status: int = 200, path: str = "/") -> HttpMessage:
    head = HttpHead(is_request=is_request, major=1, minor=1, path=path, status=status)
    return HttpMessage(head, start_ns=start_ns, end_ns=start_ns + 5)


def test_responses_without_a_pending_request_are_counted_and_dropped():
    stitcher = HttpStitcher()
    assert stitcher.add_responses([msg_at(10, is_request=False)]) == []
    assert stitcher.unmatched_responses == 1


def test_response_older_than_the_oldest_request_is_unmatched():
    stitcher = HttpStitcher()
    stitcher.add_requests([msg_at(100, path="/b")])
    lost_requests_response, answer = msg_at(50, is_request=False), msg_at(150, is_request=False)
    pairs = stitcher.add_responses([lost_requests_response, answer])
    assert [(q.path, r.start_ns) for q, r in pairs] == [("/b", 150)]
    assert stitcher.unmatched_responses == 1


def test_pending_requests_are_bounded():
    stitcher = HttpStitcher(max_pending=3)
    stitcher.add_requests([msg_at(i, path=f"/{i}") for i in range(5)])
    assert (stitcher.pending_requests, stitcher.dropped_requests) == (3, 2)
    pairs = stitcher.add_responses([msg_at(10, is_request=False)])
    assert pairs[0][0].path == "/2"


def test_expire_returns_requests_whose_response_never_came():
    stitcher = HttpStitcher()
    stitcher.add_requests([msg_at(t, path=f"/{t}") for t in (10, 20, 30)])
    assert [m.path for m in stitcher.expire(25)] == ["/10", "/20"]
    assert (stitcher.pending_requests, stitcher.dropped_requests) == (1, 2)


# Columns


def test_headers_json_joins_repeated_names():
    headers = [("Accept", "text/html"), ("X-Id", "7"), ("accept", "application/json"), ("Via", "a, b")]
    assert json.loads(headers_json(headers)) == {"Accept": "text/html, application/json", "X-Id": "7", "Via": "a, b"}
    assert headers_json([]) == "{}"


def test_latency_runs_from_first_request_byte_to_last_response_byte():
    parser_req, parser_resp = HttpParser(is_request=True), HttpParser(is_request=False)
    (req,) = parser_req.feed(request(), 1_000)
    stream = response(body=b"0123456789")
    assert parser_resp.feed(stream[:20], 5_000) == []
    (resp,) = parser_resp.feed(stream[20:], 7_500)
    assert latency_ns(req, resp) == 6_500


def test_random_chunking_of_a_mixed_stream():
    rng = random.Random(7)
    patch = b"PATCH /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;a\r\nz\r\n0\r\n\r\n"
    requests = [GET, POST, request("PUT", "/up", b"x" * 3000), patch] * 25
    responses = [OK, CHUNKED, NO_CONTENT, NOT_MODIFIED, response(body=bytes(range(256)) * 20)] * 20
    for is_request, stream in ((True, b"".join(requests)), (False, b"".join(responses))):
        whole, _ = parse(stream, is_request)
        assert len(whole) == 100
        parser, msgs, at = HttpParser(is_request), [], 0
        while at < len(stream):
            size = rng.choice((1, 2, 3, 7, 64, 500, 4096))
            msgs += parser.feed(stream[at : at + size], at)
            at += size
        assert [untimed(m) for m in msgs] == [untimed(m) for m in whole]
        assert parser.parse_errors == 0
