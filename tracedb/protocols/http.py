"""HTTP/1.x: the bytes of one connection to messages, and requests paired with responses.

This module owns HTTP/1.x framing as RFC 9112 defines it (start line, header
section, body length per §6.3, chunked coding) for traced traffic, which may
begin mid-message, lose bytes or carry things that are not HTTP at all:

- `HttpParser` parses one direction incrementally. `feed()` takes the next
  contiguous bytes with the time of the syscall that carried them and returns
  the messages they complete; `gap()` says bytes were lost. After malformed
  input or a gap it drops the message in progress and resynchronises on the
  next plausible message start: a known method and a space (requests) or
  `HTTP/1.` (responses), anywhere, not only at a line start, because the
  message after a lost stretch of body usually follows body bytes directly.
- `HttpStitcher` pairs the requests and responses of one connection in order,
  as HTTP/1.x pipelining requires.
- `headers_json` and `latency_ns` turn a pair into `http_events` columns.
- `HttpTrace` is the socket tracer's view of one connection: bytes of both
  directions in, http_events rows out.

Memory per parser is bounded: a header section over HEAD_LIMIT bytes or
MAX_HEADERS fields is malformed, and body bytes past `body_limit` are counted,
not kept.

Speed: traced traffic repeats itself (the same clients send the same header
sections, a server answers with the same ones), so a start line and header
section that arrive whole, with CRLF line ends, are parsed in one go and the
result, an `HttpHead` with what every message of that head shares (its
fields' JSON, the body length they give), is cached by their bytes
(`_parse_head`); a message is its head plus times and body. A chunk that
begins at a message start and holds whole messages (usually one syscall, one
message; or a response's head whose body follows uncaptured, as sendfile()
sends it) is parsed without the steps at all. Anything else takes the
step-by-step path, which these shortcuts agree with. HttpTrace's rows are
tuples (`row_fields`), cheaper than dicts to build and to turn into columns.

A protocol switch (101 Switching Protocols, or a 2xx answer to CONNECT) ends
HTTP on the connection. The response parser sees it and sets `switched`; the
caller then calls `switch_protocols()` on the request parser. Both ignore all
later bytes.
"""

from __future__ import annotations

import functools
import json
import re
from collections import deque
from operator import attrgetter
from typing import NamedTuple

from tracedb.protocols.base import Malformed, PairedTrace, TimedInput

HEAD_LIMIT = 64 * 1024  # bytes of a start line and header section, or of a trailer section
MAX_HEADERS = 200
CHUNK_LINE_LIMIT = 4096  # a chunk-size line with its extensions
MAX_LENGTH = 2**63 - 1  # a larger Content-Length would not fit http_events' int64 body_size
MAX_PENDING_METHODS = 1024  # request methods a response parser remembers (for HEAD)
# Parses of distinct heads (start line + header section) kept per direction,
# of heads up to CACHED_HEAD_BYTES; JSON texts of distinct header lists kept.
# Worst case, heads near HEAD_LIMIT, the JSON cache holds ~2 * 256 * HEAD_LIMIT bytes.
CACHED_HEADS = 256
CACHED_HEAD_BYTES = 4096
CACHED_HEADERS_JSON = 256

# Methods a request may start with: RFC 9110's, PATCH and WebDAV's. Other
# tokens are malformed: a looser set would let the resynchronising search take
# more body text for a message start, and parsing in step agrees with it.
METHODS = frozenset(
    b"GET HEAD POST PUT DELETE CONNECT OPTIONS TRACE PATCH"
    b" PROPFIND PROPPATCH MKCOL COPY MOVE LOCK UNLOCK REPORT SEARCH".split()
)
_LONGEST_METHOD = max(map(len, METHODS))
_METHOD_PREFIXES = frozenset(m[:n] for m in METHODS for n in range(len(m) + 1))
_REQUEST_START = re.compile(b"(?:" + b"|".join(sorted(METHODS)) + b") ")
_RESPONSE_START = b"HTTP/1."
_START_TAIL = max(_LONGEST_METHOD, len(_RESPONSE_START) - 1)  # bytes of a start that may be split off

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_STATUS_CODE = re.compile(rb"[1-5][0-9][0-9]")
_DECIMAL = re.compile(r"[0-9]{1,19}")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
_SECTION_END = re.compile(rb"\n\r?\n")
_new_tuple = tuple.__new__  # builds a NamedTuple about 3x faster than calling it, which goes through Python code
# Methods whose responses' bodies end differently (RFC 9112 §6.3): none after
# HEAD, a tunnel after a 2xx to CONNECT.
_ANSWER_FRAMING_METHODS = frozenset(("HEAD", "CONNECT"))


class HttpHead(NamedTuple):
    """A start line and header section, parsed: shared by every message that
    starts with exactly these bytes (see `_parse_head`), so never changed."""

    is_request: bool
    major: int
    minor: int
    method: str = ""  # requests
    path: str = ""
    status: int = 0  # responses
    reason: str = ""
    interim: bool = False  # a 1xx response but 101, the final one follows (from status, when parsed)
    headers: tuple[tuple[str, str], ...] = ()  # in order, names as sent
    headers_json: str = "{}"  # as http_events has them
    framing: _Framing | None = None  # None until the header section is parsed
    # The body length (0: no body) if the head tells it, unless the message
    # answers HEAD or CONNECT; else None (chunked, until close, ...).
    plain_length: int | None = None


class HttpMessage(NamedTuple):
    """One request or response: its head, when it came, its body."""

    head: HttpHead
    start_ns: int  # timestamp of the chunk holding the message's first byte
    end_ns: int  # timestamp of the chunk holding its last byte
    body: bytes = b""  # the first body_limit bytes (decoded, for chunked)
    body_size: int = 0  # full body size (decoded, for chunked)
    chunked: bool = False

    is_request = property(attrgetter("head.is_request"))
    major = property(attrgetter("head.major"))
    minor = property(attrgetter("head.minor"))
    method = property(attrgetter("head.method"))
    path = property(attrgetter("head.path"))
    status = property(attrgetter("head.status"))
    reason = property(attrgetter("head.reason"))

    @property
    def headers(self) -> list[tuple[str, str]]:
        return list(self.head.headers)


class HttpParser(TimedInput):
    """Incremental parser for one direction of one connection.

    Parsing is a loop of steps, one per part of a message: start line, header
    section, body bytes, chunk-size line, ... `_step` holds the one to run
    next; it consumes what it can and returns whether to run again. A step
    that finds malformed input raises Malformed with the position still at
    the start of the offending part, where the search for the next message
    begins.
    """

    def __init__(self, is_request: bool, body_limit: int = 1024) -> None:
        super().__init__()
        self.is_request = is_request
        self.body_limit = body_limit
        self.parse_errors = 0
        self.resyncs = 0
        self.switched = False
        self._methods: deque[str] = deque(maxlen=MAX_PENDING_METHODS)
        self._begin_message()

    # The interface

    def feed(self, data: bytes, timestamp_ns: int) -> list[HttpMessage]:
        """Parse the next bytes of the stream, carried by a syscall at
        timestamp_ns; return the messages they complete, in order."""
        if self.switched or not data:
            return []
        done: list[HttpMessage] = []
        # At a message start (nothing buffered, nothing of a message seen) whole messages skip the steps.
        at_start = (not self._buf and self._step is HttpParser._step_start_line and self._start_ns is None
                    and not self._candidate)
        taken = self._take_whole_messages(data, timestamp_ns, done) if at_start else 0
        if taken < len(data):
            self._append_input(data[taken:], timestamp_ns)
            self._run(done)
            self._compact()
        return done

    def gap(self, lost_bytes: int, timestamp_ns: int = 0) -> list[HttpMessage]:
        """lost_bytes bytes are missing here; timestamp_ns is when the syscall
        that moved them returned.

        Inside a body of known length (Content-Length, or the current chunk)
        the lost bytes are counted as body bytes and parsing goes on: this is
        how bodies sent with sendfile() or past the kernel's capture limit
        arrive. A message whose body ends inside the gap is returned; what
        follows it in the gap is lost, so parsing resumes at the next
        plausible message start. Elsewhere, the message in progress is
        dropped and parsing resumes the same way."""
        if self.switched:
            return []
        done: list[HttpMessage] = []
        # In a body of known length: steps consume every body byte they are
        # given, so at a gap the buffer is then fully consumed.
        if self._step in _KNOWN_LENGTH_BODY_STEPS and self._pos == len(self._buf):
            lost_bytes -= self._skip_body(lost_bytes, timestamp_ns, done)
            if not lost_bytes:
                return done
        self._discard_input()
        self._begin_message()
        self._resync()
        return done

    def _skip_body(self, lost_bytes: int, timestamp_ns: int, done: list[HttpMessage]) -> int:
        """Count up to lost_bytes missing body bytes; return how many were body."""
        skipped = min(lost_bytes, self._remaining)
        self._skip_input(skipped, timestamp_ns)
        self._body_size += skipped
        self._remaining -= skipped
        if not self._remaining:
            if self._step is HttpParser._step_fixed_body:
                self._finish_at(timestamp_ns, done)
            else:
                self._goto(HttpParser._step_chunk_data_end)
        return skipped

    def close(self, timestamp_ns: int) -> list[HttpMessage]:
        """The stream ended (the connection closed at timestamp_ns): finish a
        response whose body runs until the close, and forget anything partial.
        The message's end_ns stays the time of its last byte: the close may be
        seen much later than it happened."""
        done: list[HttpMessage] = []
        if self._step is HttpParser._step_until_close:
            self._finish(done)
        self._discard_input()
        self._begin_message()
        return done

    def expect_response_to(self, method: str) -> None:
        """Response parsers: the method of the next request of the connection,
        in order. A response to HEAD has no body; one to CONNECT may open a tunnel."""
        self._methods.append(method)

    def switch_protocols(self) -> None:
        """The connection no longer carries HTTP: ignore all later bytes."""
        self.switched = True
        self._goto(HttpParser._step_switched)

    @property
    def buffered_bytes(self) -> int:
        """Bytes held: unparsed input and the kept start of the current body."""
        return len(self._buf) - self._pos + len(self._body)

    # Whole messages without the steps

    def _take_whole_messages(self, data: bytes, timestamp_ns: int, done: list[HttpMessage]) -> int:
        """The parser being at a message start, parse the messages `data`
        holds from its start whose head `_parse_head` takes and whose body is
        empty or of known length: whole ones come out, a last one whose body
        goes on is left to the steps in its body. The parser ends as the steps
        would leave it; return the bytes taken, the rest is for the steps.

        This is the path of nearly every message, hence the inlined cache
        lookup and the locals."""
        heads, body_limit = _CACHED_HEADS[self.is_request], self.body_limit
        methods = () if self.is_request else self._methods  # a request answers none
        at, size = 0, len(data)
        while at < size:
            end = data.find(b"\r\n\r\n", at, at + HEAD_LIMIT)
            if end < 0:
                break
            end += 4
            raw = data[at:end]
            head = heads.get(raw) or _parse_head(raw, self.is_request)
            if head is None:
                break
            length = head.plain_length
            if methods and methods[0] in _ANSWER_FRAMING_METHODS:  # the answered method, as _answered_method tells
                length = _length_if_known(False, head.status, methods[0], head.framing)
            if length is None:
                break
            if methods and not head.interim:
                methods.popleft()  # answered
            at = end + length
            if at > size:  # the body goes on: the steps take it from here
                self._head, self._start_ns, self._remaining = head, timestamp_ns, length
                self._goto(HttpParser._step_fixed_body)
                at = end
                break
            body = data[end:at] if length <= body_limit else data[end : end + body_limit]
            done.append(_new_tuple(HttpMessage, (head, timestamp_ns, timestamp_ns, body, length, False)))
        if at:  # later lookups are past these chunks (a message left in progress has its start time)
            self._chunks.clear()
            self._base += at
        return at

    # The loop and its bookkeeping

    def _drop_malformed(self) -> None:
        if self._step is HttpParser._step_start_line:
            # The search resumes after the failed start. A candidate found by
            # resynchronising that is no start line is not a message either.
            self._pos += 1
            if self._candidate:
                self._goto(HttpParser._step_resync)
                return
        self.parse_errors += 1
        self._resync()

    def _resync(self) -> None:
        self.resyncs += 1
        self._goto(HttpParser._step_resync)

    def _begin_message(self, candidate: bool = False) -> None:
        self._candidate = candidate  # found by resynchronisation, start line not yet parsed
        self._head: HttpHead | None = None  # from its start line on, with the header fields once parsed
        self._start_ns: int | None = None  # from its first byte on
        self._body = bytearray()  # its first body_limit bytes
        self._body_size = 0
        self._chunked = False
        self._start_line_bytes = 0  # counted with the header section against HEAD_LIMIT
        self._remaining = 0  # bytes left of a Content-Length body or of a chunk
        self._step, self._scan_from = HttpParser._step_start_line, 0  # as _goto does (inlined: every message)

    def _finish(self, done: list[HttpMessage]) -> None:
        self._finish_at(self._time_at(self._pos - 1), done)

    def _finish_at(self, end_ns: int, done: list[HttpMessage]) -> None:
        body = bytes(self._body) if self._body else b""  # usually none kept (sent with sendfile()): no copy
        message = (self._head, self._start_ns, end_ns, body, self._body_size, self._chunked)
        done.append(_new_tuple(HttpMessage, message))
        self._begin_message()

    # Delimiters. Each search resumes where the last one of the same step
    # stopped, so bytes arriving one at a time are not scanned again.

    def _line_end(self, budget: int) -> int:
        """Index just past the LF that ends the line at _pos, or -1 while it
        has not arrived. A line longer than budget bytes is malformed."""
        buf, pos = self._buf, self._pos
        lf = buf.find(b"\n", max(self._scan_from, pos), pos + budget)
        if lf >= 0:
            return lf + 1
        if len(buf) - pos >= budget:
            raise Malformed
        self._scan_from = len(buf)
        return -1

    def _section_end(self, budget: int) -> int:
        """Index just past the empty line that ends the field section at
        _pos, or -1 while it has not arrived. A longer section than budget
        bytes is malformed."""
        buf, pos = self._buf, self._pos
        lead = bytes(buf[pos : pos + 2])
        if lead.startswith(b"\n"):  # no fields
            return pos + 1
        if lead == b"\r\n":
            return pos + 2
        found = _SECTION_END.search(buf, max(self._scan_from, pos), pos + budget)
        if found:
            return found.end()
        if len(buf) - pos >= budget:
            raise Malformed
        self._scan_from = max(pos, len(buf) - 2)  # an end may be arriving split
        return -1

    def _line_before(self, end: int) -> bytes:
        """The line from _pos to end, without its CRLF or bare LF."""
        line = bytes(self._buf[self._pos : end - 1])
        return line[:-1] if line.endswith(b"\r") else line

    def _may_start_message(self, pos: int) -> bool | None:
        """Whether a message may begin at _buf[pos]; None if too few bytes to tell."""
        if self.is_request:
            head = bytes(self._buf[pos : pos + _LONGEST_METHOD + 1])
            space = head.find(b" ")
            if space >= 0:
                return head[:space] in METHODS
            return None if head in _METHOD_PREFIXES else False
        head = bytes(self._buf[pos : pos + len(_RESPONSE_START)])
        if head == _RESPONSE_START:
            return True
        return None if _RESPONSE_START.startswith(head) else False

    def _find_start(self, pos: int) -> int:
        """Index of the next plausible message start at or after pos, or -1."""
        if self.is_request:
            found = _REQUEST_START.search(self._buf, pos)
            return found.start() if found else -1
        return self._buf.find(_RESPONSE_START, pos)

    # The steps

    def _step_resync(self, done: list[HttpMessage]) -> bool:
        start = self._find_start(self._pos)
        if start < 0:
            self._pos = max(self._pos, len(self._buf) - _START_TAIL)
            return False
        self._pos = start
        self._begin_message(candidate=True)
        return True

    def _step_start_line(self, done: list[HttpMessage]) -> bool:
        buf, pos = self._buf, self._pos
        if pos == len(buf):
            return False
        if buf[pos] in b"\r\n":
            return self._skip_empty_line()
        if self._start_ns is None and not self._candidate and self._parse_whole_head(done):
            return True
        if self._may_start_message(pos) is False:
            raise Malformed
        if self._start_ns is None:
            self._start_ns = self._time_at(pos)
        end = self._line_end(HEAD_LIMIT)
        if end < 0:
            return False
        line = self._line_before(end)
        self._head = _parse_request_line(line) if self.is_request else _parse_status_line(line)
        self._candidate = False
        self._start_line_bytes = end - pos
        self._pos = end
        self._goto(HttpParser._step_header_section)
        return True

    def _skip_empty_line(self) -> bool:
        """Empty lines before a message are ignored (RFC 9112 §2.2): some
        clients send a CRLF after a request body. A CR followed by anything
        else cannot begin a message."""
        buf, pos = self._buf, self._pos
        lead = bytes(buf[pos : pos + 2])
        if lead == b"\r":
            return False
        if lead.startswith(b"\n") or lead == b"\r\n":
            self._pos = buf.index(b"\n", pos) + 1
            return True
        raise Malformed

    def _parse_whole_head(self, done: list[HttpMessage]) -> bool:
        """At a message's first look: if its start line and header section
        are all here, parse them at once (cached) and start the body, leaving
        the parser as the two steps would. False: the steps must do it (not
        all here yet, bare LFs, malformed, or found by resynchronising, where
        a long search for the section's end may find nothing)."""
        buf, pos = self._buf, self._pos
        end = buf.find(b"\r\n\r\n", pos, pos + HEAD_LIMIT)
        if end < 0:
            return False
        end += 4
        head = _parse_head(bytes(buf[pos:end]), self.is_request)
        if head is None:
            return False
        self._start_ns = self._time_at(pos)
        self._head = head
        self._pos = end
        # As after the header section step: a framing error is counted there.
        self._goto(HttpParser._step_header_section)
        self._start_body(done)
        return True

    def _step_header_section(self, done: list[HttpMessage]) -> bool:
        end = self._section_end(HEAD_LIMIT - self._start_line_bytes)
        if end < 0:
            return False
        self._head = _with_fields(self._head, _parse_fields(bytes(self._buf[self._pos : end])))
        self._pos = end
        self._start_body(done)
        return True

    def _start_body(self, done: list[HttpMessage]) -> None:
        """Go on with the body, the header section read."""
        head = self._head
        method = "" if head.is_request else self._answered_method(head)
        body = _body_kind(head.is_request, head.status, method, head.framing)
        if body is _NO_BODY:
            self._finish(done)
        elif body is _FIXED:
            self._remaining = head.framing.length
            self._goto(HttpParser._step_fixed_body)
        elif body is _CHUNKED:
            self._chunked = True
            self._goto(HttpParser._step_chunk_size)
        elif body is _UNTIL_CLOSE:
            self._goto(HttpParser._step_until_close)
        elif body is _SWITCH:
            self._finish(done)
            self.switch_protocols()
        else:
            raise Malformed

    def _answered_method(self, head: HttpHead) -> str:
        """The method of the request this response answers ("" if unknown). An
        interim response leaves it to the final response that follows."""
        if not self._methods:
            return ""
        return self._methods[0] if head.interim else self._methods.popleft()

    def _take_body(self, wanted: int) -> int:
        """Consume up to `wanted` body bytes, keeping the first body_limit of
        the message; return how many were there."""
        start = self._pos
        taken = min(wanted, len(self._buf) - start)
        room = self.body_limit - len(self._body)
        if room > 0:
            self._body += self._buf[start : start + min(room, taken)]
        self._body_size += taken
        self._pos = start + taken
        return taken

    def _step_fixed_body(self, done: list[HttpMessage]) -> bool:
        self._remaining -= self._take_body(self._remaining)
        if self._remaining:
            return False
        self._finish(done)
        return True

    def _step_until_close(self, done: list[HttpMessage]) -> bool:
        self._take_body(len(self._buf) - self._pos)
        return False

    def _step_chunk_size(self, done: list[HttpMessage]) -> bool:
        end = self._line_end(CHUNK_LINE_LIMIT)
        if end < 0:
            return False
        size = self._line_before(end).split(b";", 1)[0].strip(b" \t")  # extensions are ignored
        if not _CHUNK_SIZE.fullmatch(size):
            raise Malformed
        self._pos = end
        self._remaining = int(size, 16)
        self._goto(HttpParser._step_chunk_data if self._remaining else HttpParser._step_trailer_section)
        return True

    def _step_chunk_data(self, done: list[HttpMessage]) -> bool:
        self._remaining -= self._take_body(self._remaining)
        if self._remaining:
            return False
        self._goto(HttpParser._step_chunk_data_end)
        return True

    def _step_chunk_data_end(self, done: list[HttpMessage]) -> bool:
        end = self._line_end(2)
        if end < 0:
            return False
        if self._line_before(end):
            raise Malformed
        self._pos = end
        self._goto(HttpParser._step_chunk_size)
        return True

    def _step_trailer_section(self, done: list[HttpMessage]) -> bool:
        # Trailer fields are checked but not kept: they may not be merged into
        # the header fields (RFC 9110 §6.5.1).
        end = self._section_end(HEAD_LIMIT)
        if end < 0:
            return False
        _parse_fields(bytes(self._buf[self._pos : end]))
        self._pos = end
        self._finish(done)
        return True

    def _step_switched(self, done: list[HttpMessage]) -> bool:
        self._pos = len(self._buf)
        return False


_KNOWN_LENGTH_BODY_STEPS = (HttpParser._step_fixed_body, HttpParser._step_chunk_data)


class _Framing(NamedTuple):
    """What a message's header fields say about where its body ends."""

    codings: list[str]  # the elements of its Transfer-Encoding fields, in order
    length: int | None  # its Content-Length, None if absent
    bad_length: bool  # differing or invalid Content-Length values: malformed unless a coding decides


def _framing(headers: list[tuple[str, str]]) -> _Framing:
    """The framing fields of a header list; a bad Content-Length is noted, not raised."""
    codings, lengths = _framing_fields(headers)
    try:
        return _Framing(codings, _content_length(lengths), False)
    except Malformed:
        return _Framing(codings, None, True)


# How a message's body ends, once its header section is read.
_NO_BODY, _FIXED, _CHUNKED, _UNTIL_CLOSE, _SWITCH, _MALFORMED = (
    "no body", "Content-Length", "chunked", "until close", "protocol switch", "malformed")


def _body_kind(is_request: bool, status: int, method: str, framing: _Framing) -> str:
    """How the body ends (RFC 9112 §6.3); for a response, `method` is the
    answered request's ("" if unknown)."""
    if not is_request:
        if status == 101 or (method == "CONNECT" and 200 <= status < 300):
            return _SWITCH
        if method == "HEAD" or status < 200 or status in (204, 304):
            return _NO_BODY
    if framing.codings:
        if framing.codings[-1].lower() == "chunked":
            return _CHUNKED
        return _MALFORMED if is_request else _UNTIL_CLOSE  # a request's end would be unknowable
    if framing.bad_length:
        return _MALFORMED
    if framing.length:
        return _FIXED
    return _NO_BODY if framing.length == 0 or is_request else _UNTIL_CLOSE


def _length_if_known(is_request: bool, status: int, method: str, framing: _Framing) -> int | None:
    """The body length as _body_kind's arguments give it: 0 if there is no
    body, the Content-Length if it has one; None for any other kind."""
    body = _body_kind(is_request, status, method, framing)
    if body is _NO_BODY:
        return 0
    return framing.length if body is _FIXED else None


def _with_fields(line: HttpHead, fields: list[tuple[str, str]]) -> HttpHead:
    """The head of a start line (parsed, without fields) and its header fields."""
    framing = _framing(fields)
    return line._replace(headers=tuple(fields), headers_json=headers_json(fields), framing=framing,
                         plain_length=_length_if_known(line.is_request, line.status, "", framing))


def _parse_head(head: bytes, is_request: bool) -> HttpHead | None:
    """A start line and header section ending with the first CRLF CRLF of
    `head`, parsed; None if the steps must parse them: bare LFs (where the
    steps' line and section ends need not be the CRLFs) or malformed (the
    steps report it at the right place). Cached for heads that are not large:
    the result depends on the bytes alone, so equal bytes may share it."""
    cache = _CACHED_HEADS[is_request]
    if head in cache:
        return cache[head]
    parsed = _parse_head_uncached(head, is_request)
    if len(head) <= CACHED_HEAD_BYTES:
        if len(cache) >= CACHED_HEADS:
            del cache[next(iter(cache))]  # the oldest: heads that stay in use come back soon
        cache[head] = parsed
    return parsed


# Parsed heads by their bytes: [False] for responses, [True] for requests.
# Plain dicts, so that the hot path looks a head up without a call.
_CACHED_HEADS: tuple[dict[bytes, HttpHead | None], dict[bytes, HttpHead | None]] = ({}, {})


def _parse_head_uncached(head: bytes, is_request: bool) -> HttpHead | None:
    if head.count(b"\n") != head.count(b"\r\n"):
        return None
    line, _, section = head.partition(b"\r\n")
    try:
        return _with_fields(_parse_request_line(line) if is_request else _parse_status_line(line),
                            _parse_fields(section))
    except Malformed:
        return None


def _parse_request_line(line: bytes) -> HttpHead:
    parts = line.split(b" ")
    if len(parts) != 3 or parts[0] not in METHODS or not parts[1]:
        raise Malformed
    major, minor = _parse_version(parts[2])
    return HttpHead(is_request=True, major=major, minor=minor, method=parts[0].decode(), path=_text(parts[1]))


def _parse_status_line(line: bytes) -> HttpHead:
    version, _, rest = line.partition(b" ")
    code, _, reason = rest.partition(b" ")  # the reason may be empty or hold spaces
    if not _STATUS_CODE.fullmatch(code):
        raise Malformed
    major, minor = _parse_version(version)
    status = int(code)
    return HttpHead(is_request=False, major=major, minor=minor, status=status, reason=_text(reason),
                    interim=100 <= status < 200 and status != 101)


def _parse_version(text: bytes) -> tuple[int, int]:
    if len(text) != 8 or not text.startswith(b"HTTP/1.") or not text[7:].isdigit():
        raise Malformed
    return 1, int(text[7:])


def _parse_fields(section: bytes) -> list[tuple[str, str]]:
    """The fields of a section that ends with its empty line."""
    lines = _text(section).split("\n")[:-2]  # the empty line leaves "" or "\r", then ""
    if len(lines) > MAX_HEADERS:
        raise Malformed
    fields = []
    for line in lines:
        name, colon, value = line.partition(":")
        # The token test also rejects obsolete line folding (a line beginning
        # with whitespace, RFC 9112 §5.2) and whitespace before the colon (§5.1).
        if not colon or not _TOKEN.fullmatch(name):
            raise Malformed
        fields.append((name, value.strip(" \t\r")))  # \r: what is left of a CRLF
    return fields


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


def _framing_fields(headers: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """The elements of the Transfer-Encoding and of the Content-Length fields."""
    codings: list[str] = []
    lengths: list[str] = []
    for name, value in headers:
        lower = name.lower()
        if lower == "transfer-encoding":
            codings += filter(None, (item.strip(" \t") for item in value.split(",")))
        elif lower == "content-length":
            lengths += (item.strip(" \t") for item in value.split(","))
    return codings, lengths


def _content_length(lengths: list[str]) -> int | None:
    """The Content-Length, None if absent. Differing values, as in a request
    smuggling attempt, make the message malformed (RFC 9112 §6.3)."""
    if not lengths:
        return None
    if len(set(lengths)) > 1 or not _DECIMAL.fullmatch(lengths[0]) or int(lengths[0]) > MAX_LENGTH:
        raise Malformed
    return int(lengths[0])


class HttpStitcher:
    """Pairs requests with responses of one connection in order (HTTP/1.x pipelining).

    Interim responses (1xx other than 101) are dropped: the final response
    that follows answers the request. A response that began before the oldest
    pending request cannot answer it (timestamps come from one monotonic clock
    and a read is stamped when it returns): that response's own request was
    lost, so it is counted as unmatched and the request keeps waiting.
    """

    def __init__(self, max_pending: int = 1024) -> None:
        self.max_pending = max_pending
        self.unmatched_responses = 0
        self.dropped_requests = 0
        self._pending: deque[HttpMessage] = deque()

    @property
    def pending_requests(self) -> int:
        return len(self._pending)

    def add_requests(self, msgs: list[HttpMessage]) -> None:
        pending = self._pending
        pending.extend(msgs)
        while len(pending) > self.max_pending:  # the oldest lost their responses
            pending.popleft()
            self.dropped_requests += 1

    def add_responses(self, msgs: list[HttpMessage]) -> list[tuple[HttpMessage, HttpMessage]]:
        """Return the (request, response) pairs these responses complete."""
        pairs = []
        pending = self._pending
        for resp in msgs:
            if resp.head.interim:
                continue
            if pending and pending[0].start_ns <= resp.start_ns:
                pairs.append((pending.popleft(), resp))
            else:
                self.unmatched_responses += 1
        return pairs

    def expire(self, older_than_ns: int) -> list[HttpMessage]:
        """Remove and return the pending requests that started before
        older_than_ns: their responses are taken to be lost."""
        expired = []
        while self._pending and self._pending[0].start_ns < older_than_ns:
            expired.append(self._pending.popleft())
        self.dropped_requests += len(expired)
        return expired


def headers_json(headers: list[tuple[str, str]]) -> str:
    """The header fields as a JSON object of strings. Names keep the spelling
    of their first occurrence; a name repeated (in any case) gets its values
    joined with ", " in order, as RFC 9110 §5.3 allows. That join is not
    reversible for Set-Cookie, whose values may themselves hold commas."""
    return _headers_json(tuple(headers))


@functools.lru_cache(maxsize=CACHED_HEADERS_JSON)
def _headers_json(headers: tuple[tuple[str, str], ...]) -> str:
    spellings: dict[str, str] = {}
    joined: dict[str, str] = {}
    for name, value in headers:
        key = spellings.setdefault(name.lower(), name)
        joined[key] = f"{joined[key]}, {value}" if key in joined else value
    return json.dumps(joined, ensure_ascii=False, separators=(",", ":"))


def latency_ns(req: HttpMessage, resp: HttpMessage) -> int:
    """From the request's first byte to the response's last."""
    return resp.end_ns - req.start_ns


class HttpTrace(PairedTrace):
    table = "http_events"
    row_fields = ("time_ns", "major_version", "minor_version", "req_headers", "req_method", "req_path", "req_body",
                  "req_body_size", "resp_headers", "resp_status", "resp_message", "resp_body", "resp_body_size",
                  "latency")

    def __init__(self, body_limit: int):
        super().__init__(
            HttpParser(is_request=True, body_limit=body_limit),
            HttpParser(is_request=False, body_limit=body_limit),
        )
        self.stitcher = HttpStitcher()

    @property
    def parse_errors(self) -> int:
        return self.requests.parse_errors + self.responses.parse_errors + self.stitcher.unmatched_responses

    def on_bytes(self, request_side: bool, data: bytes, time_ns: int) -> None:
        # PairedTrace's, without the dispatch through _add: nearly every event
        # comes this way, and many (a response's head, its body follows) end
        # no message.
        if request_side:
            requests = self.requests.feed(data, time_ns)
            if requests:
                self._add_requests(requests)
        else:
            responses = self.responses.feed(data, time_ns)
            if responses:
                self._add_responses(responses)

    def _add(self, request_side: bool, messages: list[HttpMessage]) -> None:
        if request_side:
            self._add_requests(messages)
        else:
            self._add_responses(messages)

    def _add_requests(self, requests: list[HttpMessage]) -> None:
        expect_response_to = self.responses.expect_response_to
        for request in requests:
            expect_response_to(request.head.method)
        self.stitcher.add_requests(requests)

    def on_close(self, time_ns: int) -> None:
        self._add_responses(self.responses.close(time_ns))

    def _add_responses(self, responses: list[HttpMessage]) -> None:
        if self.responses.switched:
            self.requests.switch_protocols()
        for req, resp in self.stitcher.add_responses(responses):
            req_head, resp_head = req.head, resp.head
            self._rows.append((  # row_fields
                req.start_ns, req_head.major, req_head.minor, req_head.headers_json, req_head.method, req_head.path,
                req.body.decode("utf-8", "replace"), req.body_size,
                resp_head.headers_json, resp_head.status, resp_head.reason,
                resp.body.decode("utf-8", "replace"), resp.body_size,
                latency_ns(req, resp),
            ))
