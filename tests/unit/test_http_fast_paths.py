"""The HTTP parser's shortcuts (whole messages in a chunk, a whole head
parsed at once and cached) against its step-by-step path: with `_parse_head`
disabled every byte goes through the steps, and the two must agree on
everything a caller can see, whatever the chunking, gaps and garbage."""

from __future__ import annotations

import random

import pytest

from tracedb.protocols import http
from tracedb.protocols.http import HttpParser

REQUESTS = [
    b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
    b"PUT /u HTTP/1.1\r\nContent-Length: 3000\r\n\r\n" + b"x" * 3000,
    b"PATCH /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"GET /bare HTTP/1.1\nHost: h\n\n",
    b"GET /mixed HTTP/1.1\r\nHost: h\n\r\n",
    b"HEAD /h HTTP/1.0\r\n\r\n",
    b"\r\nGET /after-crlf HTTP/1.1\r\n\r\n",
    b"POST /bad HTTP/1.1\r\nContent-Length: 1, 2\r\n\r\n",
    b"POST /te HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"BREW /pot HTTP/1.1\r\n\r\n",
    b"GET /fold HTTP/1.1\r\nX: a\r\n  b\r\n\r\n",
    b"GET  HTTP/1.1\r\n\r\n",
    b"GET /big HTTP/1.1\r\nCookie: " + b"c" * 5000 + b"\r\n\r\n",  # too large to cache
]
RESPONSES = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",  # to HEAD
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX: y\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 4000\r\n\r\n" + bytes(range(256)) * 15 + b"x" * 160,
    b"HTTP/1.1 200 OK\nContent-Length: 1\n\nz",
    b"HTTP/1.1 200 OK\nContent-Length: 2\r\n\r\nok",  # a bare LF ends the status line only
    b"HTTP/1.1 2000 Odd\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 7, 8\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"garbage HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n!",
]
METHODS = ["GET", "HEAD", "POST", "GET", "GET", "GET", "GET", "GET", "GET", "GET", "GET", "GET"]


def feed_all(parser: HttpParser, messages: list[bytes], rng: random.Random) -> list:
    """Feed the messages' bytes in pieces, some lost as gaps: mostly whole
    messages (as syscalls carry them), else random sizes. What the caller
    sees after each call."""
    stream = b"".join(messages)
    ends = [sum(map(len, messages[: i + 1])) for i in range(len(messages))]
    seen, at, t = [], 0, 0
    while at < len(stream):
        next_ends = [end - at for end in ends if end > at][:3]
        size = rng.choice([*next_ends, *next_ends, 1, 3, 17, 200, 1500, 20000])
        t += 1
        if rng.random() < 0.05:
            out = parser.gap(min(size, len(stream) - at), t)
        else:
            out = parser.feed(stream[at : at + size], t)
        seen.append((out, parser.parse_errors, parser.resyncs, parser.switched, parser.buffered_bytes))
        at += size
    seen.append((parser.close(t + 1), parser.parse_errors))
    return seen


def run(is_request: bool, messages: list[bytes], methods: list[str], seed: int) -> list:
    parser = HttpParser(is_request, body_limit=100)
    for method in methods:
        parser.expect_response_to(method)
    return feed_all(parser, messages, random.Random(seed))


@pytest.mark.parametrize("seed", range(40))
def test_shortcuts_agree_with_the_steps(seed, monkeypatch):
    rng = random.Random(seed)
    for is_request, corpus in ((True, REQUESTS), (False, RESPONSES)):
        picks = [rng.randrange(len(corpus)) for _ in range(60)]
        messages = [corpus[i] for i in picks]
        methods = [METHODS[i % len(METHODS)] for i in picks]
        fast = run(is_request, messages, methods, seed)
        with monkeypatch.context() as m:
            m.setattr(http, "_parse_head", lambda head, is_request: None)
            m.setattr(http, "_CACHED_HEADS", ({}, {}))
            steps = run(is_request, messages, methods, seed)
        assert fast == steps


def test_whole_messages_of_a_chunk_skip_the_steps(monkeypatch):
    def no_steps(self, done):
        raise AssertionError("the steps ran")

    monkeypatch.setattr(HttpParser, "_run", no_steps)
    parser = HttpParser(is_request=True)
    msgs = parser.feed(REQUESTS[0] + REQUESTS[1], 5)
    assert [(m.path, m.body, m.start_ns, m.end_ns) for m in msgs] == [("/a", b"", 5, 5), ("/p", b"hello", 5, 5)]


def test_a_head_is_parsed_once_per_distinct_bytes(monkeypatch):
    parsed = []
    monkeypatch.setattr(http, "_CACHED_HEADS", ({}, {}))
    monkeypatch.setattr(http, "_parse_head_uncached", lambda head, is_request: parsed.append(head))
    parser = HttpParser(is_request=True)
    for t in range(5):
        parser.feed(REQUESTS[0], t)
        parser.feed(b"GET /b HTTP/1.1\r\n\r\n", t)
    assert parsed == [REQUESTS[0], b"GET /b HTTP/1.1\r\n\r\n"]


def test_the_head_cache_is_bounded_and_drops_the_oldest(monkeypatch):
    monkeypatch.setattr(http, "_CACHED_HEADS", ({}, {}))
    monkeypatch.setattr(http, "CACHED_HEADS", 3)
    heads = [b"GET /%d HTTP/1.1\r\n\r\n" % i for i in range(5)]
    for head in heads:
        assert http._parse_head(head, True).path == head.split()[1].decode()
    assert list(http._CACHED_HEADS[True]) == heads[2:]
    assert http._parse_head(heads[-1] + b"x", False) is None  # a request head is no response head
    assert http._parse_head(b"GET /big HTTP/1.1\r\nX: " + b"x" * http.CACHED_HEAD_BYTES + b"\r\n\r\n", True)
    assert len(http._CACHED_HEADS[True]) == 3, "large heads are parsed, not kept"


def no_steps(monkeypatch):
    def steps(self, done):
        raise AssertionError("the steps ran")

    monkeypatch.setattr(HttpParser, "_run", steps)


def test_a_head_whose_body_follows_uncaptured_skips_the_steps(monkeypatch):
    """nginx's sendfile(): the head in one syscall, the body a hole."""
    parser = HttpParser(is_request=False)
    parser.expect_response_to("GET")
    no_steps(monkeypatch)
    assert parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 612\r\n\r\n", 5) == []
    (msg,) = parser.gap(612, 7)
    assert (msg.status, msg.body, msg.body_size, msg.start_ns, msg.end_ns) == (200, b"", 612, 5, 7)
    assert parser.buffered_bytes == 0


def test_the_answered_method_decides_a_whole_response(monkeypatch):
    parser = HttpParser(is_request=False)
    for method in ("HEAD", "GET", "GET"):
        parser.expect_response_to(method)
    no_steps(monkeypatch)
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
    interim = b"HTTP/1.1 100 Continue\r\n\r\n"
    msgs = parser.feed(head + head + b"ok" + interim + head + b"ok", 1)  # to HEAD: no body
    assert [(m.status, m.body) for m in msgs] == [(200, b""), (200, b"ok"), (100, b""), (200, b"ok")]
    assert not parser._methods


@pytest.mark.parametrize("stream, paths, errors", [
    (b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\n\r\n", ["/a", "/b"], 0),  # pipelined
    (b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHo", ["/a"], 0),  # the second one split
    (b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\nGET /d HTTP/1.1\r\n\r\n",
     ["/c", "/d"], 0),  # chunked: the steps, then the next message
    (b"POST /e HTTP/1.1\r\nContent-Length: 10\r\n\r\nhello", [], 0),  # the body goes on
    (b"GET /f HTTP/1.1\nHost: h\n\n", ["/f"], 0),  # bare LFs
    (b"GET /g HTTP/1.1\r\nBad Name: v\r\n\r\nGET /h HTTP/1.1\r\n\r\n", ["/h"], 1),
])
def test_what_the_shortcut_leaves_to_the_steps(stream, paths, errors):
    parser = HttpParser(is_request=True, body_limit=4)
    assert [m.path for m in parser.feed(stream, 1)] == paths
    assert parser.parse_errors == errors


def test_a_body_larger_than_its_chunk_goes_on_in_the_steps():
    parser = HttpParser(is_request=True, body_limit=4)
    assert parser.feed(b"POST /e HTTP/1.1\r\nContent-Length: 10\r\n\r\nhello", 1) == []
    (msg,) = parser.feed(b"world", 2)
    assert (msg.body, msg.body_size, msg.start_ns, msg.end_ns) == (b"hell", 10, 1, 2)
