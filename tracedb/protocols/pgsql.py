"""PostgreSQL: the bytes of one connection to protocol messages, and queries paired with their answers.

This module owns the PostgreSQL frontend/backend protocol, version 3, for
traced traffic, which may be joined mid-conversation, lose bytes or carry
things that are not PostgreSQL at all:

- `PgsqlParser` frames one direction incrementally: first the untagged
  messages a client opens with (StartupMessage, SSLRequest, GSSENCRequest,
  CancelRequest) and the server's one-byte answer to an encryption request,
  then tagged messages (a type byte and an int32 length that counts itself).
  Framing is by length alone, so bytes lost inside a message cost only that
  message's payload; after a gap elsewhere, or a header that cannot be one
  (unknown type, length out of bounds for it), the parser searches for the
  next plausible header and takes the message there only if its payload is
  well formed. Whole messages in a syscall's bytes, the usual case, are
  taken from them directly, without the step loop.
- The decoders read payloads into values; `sql_literal` and `render_error`
  turn values into text.
- `PgsqlStitcher` follows the conversation: statements and portals by name,
  the client's messages queued in order, the server's answers matched to
  them, and pgsql_events rows made (see its docstring for which rows).
- `PgsqlTrace` is the socket tracer's view of one connection: bytes of both
  directions in, pgsql_events rows out.

Memory per connection is bounded: a message's payload past MAX_KEPT bytes is
counted, not kept; statement texts, parameters, rows and results are cut to
fixed limits; prepared statements, portals and waiting requests are capped.

An encryption request the server accepts (SSL 'S', GSSAPI 'G') ends parsing
of the connection: what follows is TLS or GSSAPI. A Terminate ends the
client's side.
"""

from __future__ import annotations

import re
import struct
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import NamedTuple

from tracedb.protocols.base import Malformed, PairedTrace, TimedInput

MAX_KEPT = 1 << 20  # payload bytes held of one message; the rest of a longer one is counted and skipped
RESYNC_MAX_LENGTH = 1 << 20  # a header found by searching may announce no longer a message
SQL_LIMIT = 16 * 1024  # characters of statement text kept
ERROR_LIMIT = 4096  # characters of one rendered ErrorResponse
MAX_ROWS = 10  # rows rendered per result
MAX_RESULTS = 100  # results listed in one resp: a script sent as one Query may hold thousands
MAX_ANSWER_NAMES = 20  # answers named in the row of a batch that executed nothing
MAX_STATEMENTS = 256  # prepared statements remembered per connection, and as many portals
MAX_PENDING = 1024  # client messages waiting for their answers

# Untagged messages; their names stand in for a type byte.
STARTUP = "Startup"
SSL_REQUEST = "SSLRequest"
GSSENC_REQUEST = "GSSENCRequest"
CANCEL_REQUEST = "CancelRequest"
ENCRYPTION_RESPONSE = "EncryptionResponse"  # the server's one byte: S(SL) or G(SSAPI) accepted, or N(o)

SSL_CODE = 80877103
GSSENC_CODE = 80877104
CANCEL_CODE = 80877102
STARTUP_MAX_LENGTH = 10_000  # the server refuses a longer StartupMessage
TLS_HANDSHAKE = 0x16  # first byte of the ClientHello record sent after an accepted SSLRequest

INCOMPLETE = "<answer incomplete>"  # resp line where the rest of an answer was lost or cut by a close

_SMALL = 10_000  # the server refuses longer Describe, Execute, Close, Sync, Flush, Terminate, CopyDone, CopyFail
_LARGE = 0x3FFFFFFF  # the most PostgreSQL allocates for one message

# Type byte -> bounds of the length field (which counts itself).
FRONTEND_LENGTHS: dict[str, tuple[int, int]] = {
    "Q": (5, _LARGE), "P": (8, _LARGE), "B": (12, _LARGE), "F": (14, _LARGE),
    "D": (6, _SMALL), "E": (9, _SMALL), "C": (6, _SMALL), "f": (5, _SMALL),
    "S": (4, 4), "H": (4, 4), "X": (4, 4), "c": (4, 4),
    "d": (4, _LARGE), "p": (4, 65_539),
}
BACKEND_LENGTHS: dict[str, tuple[int, int]] = {
    "R": (8, _LARGE), "K": (12, 264), "S": (6, _LARGE), "Z": (5, 5), "v": (12, _SMALL),
    "T": (6, _LARGE), "D": (6, _LARGE), "C": (5, _SMALL), "E": (5, _LARGE), "N": (5, _LARGE),
    "1": (4, 4), "2": (4, 4), "3": (4, 4), "n": (4, 4), "I": (4, 4), "s": (4, 4), "c": (4, 4),
    "t": (6, 6 + 4 * 0xFFFF), "V": (8, _LARGE), "G": (7, _SMALL), "H": (7, _SMALL), "W": (7, _SMALL),
    "d": (4, _LARGE), "A": (10, _LARGE),
}

_INT16 = struct.Struct(">h")
_UINT16 = struct.Struct(">H")
_INT32 = struct.Struct(">i")
_UINT32 = struct.Struct(">I")
_UNTAGGED_HEAD = struct.Struct(">ii")
_HEADER = struct.Struct(">Bi")  # a tagged message's type byte and length
_TERMINATE = ord("X")  # the type byte of a client's last message
_FIELD_TAIL = struct.Struct(">IhIhih")  # a RowDescription field after its name


@dataclass(slots=True)  # made for every message: slots make that and reading it quicker
class PgMessage:
    """One protocol message. `payload` is what follows the length field (for
    an untagged message it begins with the int32 code); it is shorter than
    `size` when bytes of it were lost or it was longer than MAX_KEPT."""

    tag: str  # the type byte; for an untagged message its name (STARTUP, SSL_REQUEST, ...)
    payload: bytes
    size: int  # payload bytes the length field announced
    start_ns: int  # timestamp of the chunk holding the message's first byte
    end_ns: int  # timestamp of the chunk holding its last byte

    @property
    def truncated(self) -> bool:
        return len(self.payload) < self.size


class _Cut(Malformed):
    """A truncated payload ended before the field being read."""


def _untagged_kind(length: int, code: int) -> str | None:
    """Which untagged message a length and code announce, if any."""
    if length == 8 and code == SSL_CODE:
        return SSL_REQUEST
    if length == 8 and code == GSSENC_CODE:
        return GSSENC_REQUEST
    if code == CANCEL_CODE and 16 <= length <= 264:  # 3.2 allows keys of up to 256 bytes
        return CANCEL_REQUEST
    if code >> 16 == 3 and 9 <= length <= STARTUP_MAX_LENGTH:  # 3.x; at least the list's final NUL
        return STARTUP
    return None


def _header_kinds(lengths: dict[str, tuple[int, int]]) -> tuple[tuple[str, int, int] | None, ...]:
    """Type byte -> (tag, least length, greatest length), None for a byte
    that is no type: one index instead of chr() and a dict lookup per header."""
    kinds: list[tuple[str, int, int] | None] = [None] * 256
    for tag, (low, high) in lengths.items():
        kinds[ord(tag)] = (tag, low, high)
    return tuple(kinds)


_FRONTEND_KINDS = _header_kinds(FRONTEND_LENGTHS)
_BACKEND_KINDS = _header_kinds(BACKEND_LENGTHS)


def _header_search(lengths: dict[str, tuple[int, int]], decoders: dict) -> re.Pattern[bytes]:
    """Finds a type byte with a decoder (one whose payload has a structure to
    check) followed by the first two bytes of a length up to RESYNC_MAX_LENGTH."""
    tags = bytes(sorted(ord(t) for t in lengths if t in decoders))
    return re.compile(b"[" + re.escape(tags) + rb"]\x00[\x00-\x10]", re.DOTALL)


class PgsqlParser(TimedInput):
    """Incremental parser for one direction of one connection.

    `_step` holds the part of a message to read next (an unbound function,
    so that the parser holds no reference cycle); it consumes what it can and
    returns whether to run again. A step that meets malformed bytes raises
    Malformed with the position at the first byte of the bad message; the
    search for a header resumes at the byte after it.

    Until a message checks out (`_candidate`), a header may be chance: the
    stream was joined mid-message, or the search found it. Such a message
    is taken only if its payload decodes; one that does not is no parse
    error, the search just goes on.
    """

    def __init__(self, is_request: bool) -> None:
        super().__init__()
        self.is_request = is_request
        self.parse_errors = 0
        self.resyncs = 0  # times the framing was lost (a gap, or a bad header in step)
        self.truncated = 0  # messages delivered without all their payload
        self.stopped = False
        self._kinds = _FRONTEND_KINDS if is_request else _BACKEND_KINDS
        self._search_header = _FRONTEND_SEARCH if is_request else _BACKEND_SEARCH
        self._candidate = True  # tracing may have begun mid-message
        # The message in progress.
        self._tag = ""
        self._size = 0  # its payload length
        self._header_len = 0  # 5, or 4 for an untagged message
        self._start_ns = 0
        self._remaining = 0  # payload bytes still to come, in _step_long_payload
        self._kept = bytearray()  # the held start of a payload read by _step_long_payload
        self._room = 0  # bytes _kept may still take
        self._goto(PgsqlParser._step_untagged if is_request else PgsqlParser._step_header)

    # The interface

    def feed(self, data: bytes, timestamp_ns: int) -> list[PgMessage]:
        """Parse the next bytes of the stream, carried by a syscall at
        timestamp_ns; return the messages they complete, in order.

        Whole messages at a message boundary are taken straight from data
        (the fast path); everything else goes through the step loop, which
        takes data only up to the end of the message in progress when that
        is known, so that the fast path can go on from there."""
        if self.stopped or not data:
            return []
        done: list[PgMessage] = []
        pos = 0
        while pos < len(data) and not self.stopped:
            if self._at_boundary():
                pos = self._take_whole_messages(data, pos, timestamp_ns, done)
                if pos == len(data) or self.stopped:
                    break
            end = pos + self._stepwise_share(len(data) - pos)
            self._append_input(data[pos:end] if pos or end < len(data) else data, timestamp_ns)  # no copy if all
            self._run(done)
            self._compact()
            pos = end
        return done

    def gap(self, lost_bytes: int, timestamp_ns: int = 0) -> list[PgMessage]:
        """lost_bytes bytes are missing here; timestamp_ns is when the syscall
        that moved them returned.

        Inside the payload of a message whose header checked out, they are
        counted against its length: the message is delivered truncated when
        its length is reached, and framing goes on after it. A gap reaching
        past that message, or one anywhere else, loses the framing: the
        search for a plausible header begins after it."""
        if self.stopped:
            return []
        done: list[PgMessage] = []
        in_payload = self._step in (PgsqlParser._step_payload, PgsqlParser._step_long_payload)
        if in_payload and not self._candidate:
            lost_bytes = self._lose_payload(lost_bytes, timestamp_ns, done)
            if not lost_bytes:
                return done
        self._discard_input()
        self._search()
        return done

    def expect_encryption_answer(self) -> None:
        """Response parsers: the client asked for SSL or GSSAPI encryption; the
        next byte is the server's one-byte answer."""
        if not self.stopped:
            self._goto(PgsqlParser._step_encryption_answer)

    def stop(self) -> None:
        """The connection carries no more PostgreSQL messages on this side
        (encrypted, terminated or closed): ignore all later bytes."""
        self.stopped = True
        self._discard_input()
        self._kept = bytearray()
        self._goto(PgsqlParser._step_stopped)

    @property
    def buffered_bytes(self) -> int:
        return len(self._buf) - self._pos + len(self._kept)

    # The fast path: most syscalls carry whole messages, and most streams
    # are framed from their first message on. Taking such messages straight
    # from a syscall's bytes spares each its steps, its trip through the
    # buffer and its timestamp lookups.

    def _at_boundary(self) -> bool:
        """Whether the next byte of the stream begins a message whose header
        needs no more checks than its length bounds, with nothing buffered."""
        return self._step is PgsqlParser._step_header and not self._candidate and self._pos == len(self._buf)

    def _take_whole_messages(self, data: bytes, pos: int, timestamp_ns: int, done: list[PgMessage]) -> int:
        """Deliver the whole messages of data from pos, a message boundary,
        without the step loop: all came with this syscall, so they share its
        timestamp. Return where the step loop is to go on: at the first
        message that is not whole, whose header is bad, or that is too long
        to keep."""
        kinds, size = self._kinds, len(data)
        while size - pos >= 5:
            type_byte, length = _HEADER.unpack_from(data, pos)
            kind = kinds[type_byte]
            end = pos + 1 + length
            if kind is None or not kind[1] <= length <= kind[2] or end > size or length - 4 > MAX_KEPT:
                break
            done.append(PgMessage(kind[0], data[pos + 5 : end], length - 4, timestamp_ns, timestamp_ns))
            pos = end
            if self.is_request and type_byte == _TERMINATE:  # as in _deliver
                self.stop()
                break
        return pos

    def _stepwise_share(self, available: int) -> int:
        """How many of the next available bytes the step loop is to take: those
        that finish the payload in progress of a framed stream (at least one,
        or the step would have delivered it), so that the fast path can take
        the messages after it; otherwise all."""
        if self._step is PgsqlParser._step_payload and not self._candidate:
            return min(available, self._pos + self._header_len + self._size - len(self._buf))
        return available

    # The loop and its bookkeeping

    def _drop_malformed(self) -> None:
        if not self._candidate:
            self.parse_errors += 1
        self._pos += 1
        self._search()

    def _search(self) -> None:
        if not self._candidate:
            self.resyncs += 1
        self._candidate = True
        self._goto(PgsqlParser._step_resync)

    def _begin(self, tag: str, length: int, header_len: int) -> None:
        """A header at _pos checked out; read the payload that follows."""
        self._tag, self._size, self._header_len = tag, length - 4, header_len
        self._start_ns = self._time_at(self._pos)
        if self._size <= MAX_KEPT:
            self._goto(PgsqlParser._step_payload)
            return
        self._pos += header_len
        self._remaining, self._room = self._size, MAX_KEPT
        self._goto(PgsqlParser._step_long_payload)

    def _deliver(self, payload: bytes, end_ns: int, done: list[PgMessage]) -> None:
        msg = PgMessage(self._tag, payload, self._size, self._start_ns, end_ns)
        if self._candidate:
            if not well_formed(self.is_request, msg):
                # Candidates are read whole by _step_payload, so the message is still buffered.
                self._pos -= self._header_len + self._size
                raise Malformed
            self._candidate = False
        if len(payload) < self._size:
            self.truncated += 1
        done.append(msg)
        if self.is_request and msg.tag == "X":
            self.stop()
        elif msg.tag in (SSL_REQUEST, GSSENC_REQUEST):  # a StartupMessage follows a refusal
            self._goto(PgsqlParser._step_untagged)
        else:
            self._goto(PgsqlParser._step_header)

    def _lose_payload(self, lost_bytes: int, timestamp_ns: int, done: list[PgMessage]) -> int:
        """Count up to lost_bytes missing bytes against the payload in
        progress; return how many of them lay past its end."""
        if self._step is PgsqlParser._step_payload:
            self._kept = self._buf[self._pos + self._header_len :]
            self._remaining = self._size - len(self._kept)
            self._pos = len(self._buf)
            self._goto(PgsqlParser._step_long_payload)
        self._room = 0  # bytes after the hole do not continue the kept start
        lost = min(lost_bytes, self._remaining)
        self._remaining -= lost
        if not self._remaining:
            self._deliver(bytes(self._kept), timestamp_ns, done)
            self._kept = bytearray()
        return lost_bytes - lost

    # The steps

    def _step_untagged(self, done: list[PgMessage]) -> bool:
        buf, pos = self._buf, self._pos
        if pos == len(buf):
            return False
        if buf[pos] != 0:  # lengths below 16 MiB begin with 0; type bytes never do
            if buf[pos] == TLS_HANDSHAKE:  # the answer to an SSLRequest was not seen
                self.stop()
                return False
            self._goto(PgsqlParser._step_header)  # tracing began mid-conversation
            return True
        if len(buf) - pos < 8:
            return False
        length, code = _UNTAGGED_HEAD.unpack_from(buf, pos)
        tag = _untagged_kind(length, code)
        if tag is None:
            raise Malformed
        self._begin(tag, length, header_len=4)
        return True

    def _step_header(self, done: list[PgMessage]) -> bool:
        buf, pos = self._buf, self._pos
        if len(buf) - pos < 5:
            return False
        type_byte, length = _HEADER.unpack_from(buf, pos)
        kind = self._kinds[type_byte]
        if kind is None or not kind[1] <= length <= kind[2]:
            raise Malformed
        if self._candidate and length > RESYNC_MAX_LENGTH:
            raise Malformed
        self._begin(kind[0], length, header_len=5)
        return self._step(self, done)  # the payload is often buffered already

    def _step_payload(self, done: list[PgMessage]) -> bool:
        end = self._pos + self._header_len + self._size
        if len(self._buf) < end:
            return False
        payload = bytes(self._buf[self._pos + self._header_len : end])
        self._pos = end
        self._deliver(payload, self._time_at(end - 1), done)
        return True

    def _step_long_payload(self, done: list[PgMessage]) -> bool:
        buf, pos = self._buf, self._pos
        taken = min(len(buf) - pos, self._remaining)
        kept = min(taken, self._room)
        if kept:
            self._kept += buf[pos : pos + kept]
            self._room -= kept
        self._pos = pos + taken
        self._remaining -= taken
        if self._remaining:
            return False
        self._deliver(bytes(self._kept), self._time_at(self._pos - 1), done)
        self._kept = bytearray()
        return True

    def _step_encryption_answer(self, done: list[PgMessage]) -> bool:
        buf, pos = self._buf, self._pos
        if pos == len(buf):
            return False
        answer = buf[pos]
        if answer not in b"SNG":  # an ErrorResponse from a server that does not know the request
            self._goto(PgsqlParser._step_header)
            return True
        at = self._time_at(pos)
        self._pos = pos + 1
        done.append(PgMessage(ENCRYPTION_RESPONSE, bytes([answer]), 1, at, at))
        self._candidate = False
        if answer == ord("N"):
            self._goto(PgsqlParser._step_header)
        else:
            self.stop()
        return True

    def _step_resync(self, done: list[PgMessage]) -> bool:
        found = self._search_header.search(self._buf, self._pos)
        if found is None:
            self._pos = max(self._pos, len(self._buf) - 4)  # a header may be arriving split
            return False
        self._pos = found.start()
        self._goto(PgsqlParser._step_header)
        return True

    def _step_stopped(self, done: list[PgMessage]) -> bool:
        self._pos = len(self._buf)
        return False


# Payloads to values


class _Reader:
    """Reads the fields of one payload in order. Reading past its end is
    malformed; for a truncated payload it is _Cut, except that a string or
    value cut short is returned as far as it goes (a string marked with an
    ellipsis)."""

    __slots__ = ("data", "pos", "truncated")

    def __init__(self, data: bytes, truncated: bool = False) -> None:
        self.data = data
        self.pos = 0
        self.truncated = truncated

    def _take(self, n: int) -> int:
        start = self.pos
        if n < 0:
            raise Malformed
        if start + n > len(self.data):
            raise _Cut if self.truncated else Malformed
        self.pos = start + n
        return start

    def unpack(self, layout: struct.Struct) -> tuple:
        return layout.unpack_from(self.data, self._take(layout.size))

    def byte(self) -> int:
        return self.data[self._take(1)]

    def int16(self) -> int:
        return _INT16.unpack_from(self.data, self._take(2))[0]

    def uint16(self) -> int:
        return _UINT16.unpack_from(self.data, self._take(2))[0]

    def int32(self) -> int:
        return _INT32.unpack_from(self.data, self._take(4))[0]

    def uint32(self) -> int:
        return _UINT32.unpack_from(self.data, self._take(4))[0]

    def raw(self, n: int) -> bytes:
        if self.truncated and 0 <= len(self.data) - self.pos < n:
            n = len(self.data) - self.pos  # as far as it goes; the next field is cut
        start = self._take(n)
        return self.data[start : start + n]

    def values(self, into: list[bytes | None]) -> None:
        """An int16 count, then that many values, each an int32 length (-1:
        NULL) and its bytes; appended to into as they are read, so that a
        caller that catches _Cut keeps those before the cut."""
        count = self.uint16()
        whole, self.pos = _whole_values(self.data, self.pos, count)
        into += whole
        for _ in range(count - len(whole)):  # a value cut short or malformed: the reads of one field tell which
            into.append(_value(self))

    def cstring(self) -> str:
        data, start = self.data, self.pos
        nul = data.find(0, start)
        if nul >= 0:
            self.pos = nul + 1
            return _text(data[start:nul])
        if not self.truncated:
            raise Malformed
        if start == len(data):
            raise _Cut
        self.pos = len(data)
        return _text(data[start:]) + "…"

    def end(self) -> None:
        if self.pos != len(self.data) and not self.truncated:
            raise Malformed


@dataclass(slots=True)
class BindMessage:
    portal: str
    statement: str
    param_formats: list[int]
    params: list[bytes | None]  # None: SQL NULL
    result_formats: list[int]
    cut: bool = False  # the message was truncated: parameters after `params` are missing


class Column(NamedTuple):  # a frozen dataclass takes several times as long to make
    name: str
    type_oid: int


def _value(r: _Reader) -> bytes | None:
    size = r.int32()
    return None if size == -1 else r.raw(size)


def _whole_values(data: bytes, pos: int, count: int) -> tuple[list[bytes | None], int]:
    """Up to count values at data[pos:], each an int32 length (-1: NULL) and
    its bytes, as many as are whole and well formed, read without a call
    each; and where they end."""
    values: list[bytes | None] = []
    end = len(data)
    while count and pos + 4 <= end:
        size = _INT32.unpack_from(data, pos)[0]
        if size == -1:
            values.append(None)
            pos += 4
        elif 0 <= size <= end - pos - 4:
            values.append(data[pos + 4 : pos + 4 + size])
            pos += 4 + size
        else:
            break
        count -= 1
    return values, pos


def _whole_row(payload: bytes) -> list[bytes | None] | None:
    """A DataRow's values if its payload is exactly them, the usual case, in
    one call; None if not, for its decoder to tell what else it is."""
    if len(payload) < 2:
        return None
    count = _UINT16.unpack_from(payload)[0]
    values, end = _whole_values(payload, 2, count)
    return values if end == len(payload) and len(values) == count else None


def _decode_nothing(r: _Reader) -> None:
    r.end()


def _decode_anything(r: _Reader) -> None:
    """Messages whose bounds were all in their header (SSLRequest, GSSENCRequest, CancelRequest)."""


def _decode_startup(r: _Reader) -> dict[str, str]:
    r.int32()
    params = {}
    try:
        while name := r.cstring():
            params[name] = r.cstring()
    except _Cut:
        pass
    r.end()
    return params


def _decode_cstring(r: _Reader) -> str:
    data = r.data
    nul = data.find(0)
    if nul >= 0 and nul == len(data) - 1:  # the usual case, in one search
        return data[:nul].decode("utf-8", "replace")  # as _text does, without the call
    text = r.cstring()
    r.end()
    return text


def _decode_parse(r: _Reader) -> tuple[str, str, list[int]]:
    name, sql = r.cstring(), r.cstring()
    try:
        oids = [r.uint32() for _ in range(r.uint16())]
    except _Cut:
        oids = []
    r.end()
    return name, sql, oids


def _decode_bind(r: _Reader) -> BindMessage:
    bind = BindMessage(r.cstring(), r.cstring(), [], [], [])
    try:
        bind.param_formats = [r.int16() for _ in range(r.uint16())]
        r.values(bind.params)
        bind.result_formats = [r.int16() for _ in range(r.uint16())]
    except _Cut:
        bind.cut = True
    r.end()
    return bind


def _decode_target(r: _Reader) -> tuple[str, str]:
    """Describe and Close: 'S' (a prepared statement) or 'P' (a portal), and its name."""
    kind = chr(r.byte())
    if kind not in ("S", "P"):
        raise Malformed
    name = r.cstring()
    r.end()
    return kind, name


def _decode_execute(r: _Reader) -> str:
    portal = r.cstring()
    r.int32()  # row limit
    r.end()
    return portal


def _decode_function_call(r: _Reader) -> tuple[int, list[int], list[bytes | None], int]:
    oid = r.uint32()
    formats = [r.int16() for _ in range(r.uint16())]
    args: list[bytes | None] = []
    try:  # lo_write's data may be long enough to be truncated
        r.values(args)
        result_format = r.int16()
    except _Cut:
        result_format = 1  # not seen; the large-object functions are called for binary results
    r.end()
    return oid, formats, args, result_format


_AUTH_FIXED_SIZES = {0: 0, 2: 0, 3: 0, 5: 4, 6: 0, 7: 0, 9: 0}  # request code -> bytes after it


def _decode_authentication(r: _Reader) -> int:
    code = r.int32()
    if code in _AUTH_FIXED_SIZES:
        r.raw(_AUTH_FIXED_SIZES[code])
        r.end()
    elif code not in (8, 10, 11, 12):  # GSS continue and SASL carry data of their own
        raise Malformed
    return code


def _decode_backend_key(r: _Reader) -> None:
    r.int32()  # process id; the secret key fills the rest


def _decode_two_cstrings(r: _Reader) -> tuple[str, str]:
    first, second = r.cstring(), r.cstring()
    r.end()
    return first, second


def _decode_ready(r: _Reader) -> str:
    status = r.byte()
    if status not in b"ITE":
        raise Malformed
    r.end()
    return chr(status)


def _decode_row_description(r: _Reader) -> list[Column]:
    columns = []
    for _ in range(r.uint16()):
        name = r.cstring()
        _, _, type_oid, _, _, _ = r.unpack(_FIELD_TAIL)
        columns.append(Column(name, type_oid))
    r.end()
    return columns


def _decode_parameter_description(r: _Reader) -> list[int]:
    oids = [r.uint32() for _ in range(r.uint16())]
    r.end()
    return oids


def _decode_data_row(r: _Reader) -> list[bytes | None]:
    values: list[bytes | None] = []
    try:
        r.values(values)
    except _Cut:
        pass
    r.end()
    return values


def _decode_fields(r: _Reader) -> dict[str, str]:
    """ErrorResponse and NoticeResponse: field code -> value."""
    fields = {}
    while code := r.byte():
        fields[chr(code)] = r.cstring()
    r.end()
    return fields


def _decode_copy_response(r: _Reader) -> None:
    if r.byte() not in (0, 1):
        raise Malformed
    for _ in range(r.uint16()):
        r.int16()
    r.end()


def _decode_function_result(r: _Reader) -> bytes | None:
    value = _value(r)
    r.end()
    return value


def _decode_notification(r: _Reader) -> None:
    r.int32()
    r.cstring()
    r.cstring()
    r.end()


def _decode_negotiate(r: _Reader) -> None:
    r.int32()
    for _ in range(r.int32()):
        r.cstring()
    r.end()


# Type byte (or untagged name) -> decoder. Messages without one (CopyData,
# password messages) have no structure to check and are never searched for.
FRONTEND_DECODERS: dict[str, Callable[[_Reader], object]] = {
    STARTUP: _decode_startup, SSL_REQUEST: _decode_anything, GSSENC_REQUEST: _decode_anything,
    CANCEL_REQUEST: _decode_anything,
    "Q": _decode_cstring, "P": _decode_parse, "B": _decode_bind, "D": _decode_target, "E": _decode_execute,
    "C": _decode_target, "F": _decode_function_call, "f": _decode_cstring,
    "S": _decode_nothing, "H": _decode_nothing, "X": _decode_nothing, "c": _decode_nothing,
}
BACKEND_DECODERS: dict[str, Callable[[_Reader], object]] = {
    "R": _decode_authentication, "K": _decode_backend_key, "S": _decode_two_cstrings, "Z": _decode_ready,
    "T": _decode_row_description, "t": _decode_parameter_description, "D": _decode_data_row,
    "C": _decode_cstring, "E": _decode_fields, "N": _decode_fields, "V": _decode_function_result,
    "G": _decode_copy_response, "H": _decode_copy_response, "W": _decode_copy_response,
    "A": _decode_notification, "v": _decode_negotiate,
    "1": _decode_nothing, "2": _decode_nothing, "3": _decode_nothing, "n": _decode_nothing,
    "I": _decode_nothing, "s": _decode_nothing, "c": _decode_nothing,
}
_FRONTEND_SEARCH = _header_search(FRONTEND_LENGTHS, FRONTEND_DECODERS)
_BACKEND_SEARCH = _header_search(BACKEND_LENGTHS, BACKEND_DECODERS)


def decode(is_request: bool, msg: PgMessage) -> object:
    """The values of a message's payload; raises Malformed if it has none."""
    decoder = (FRONTEND_DECODERS if is_request else BACKEND_DECODERS).get(msg.tag)
    if decoder is None:
        raise Malformed
    return decoder(_Reader(msg.payload, len(msg.payload) < msg.size))  # msg.truncated, without a call


def well_formed(is_request: bool, msg: PgMessage) -> bool:
    """Whether a message found by chance or by searching is one: whole, and
    of a type whose payload decodes."""
    if msg.truncated:
        return False
    try:
        decode(is_request, msg)
    except Malformed:
        return False
    return True


# Values to text


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _text_prefix(raw: bytes, limit: int) -> str:
    if len(raw) <= limit:
        return raw.decode("utf-8", "replace")  # as _text does, without the call: this is per value
    return raw[:limit].decode("utf-8", "ignore") + "…"  # "ignore": the cut may split a character


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _hex(raw: bytes, limit: int) -> str:
    shown = raw[: max(limit // 2, 1)]
    return "\\x" + shown.hex() + ("…" if len(shown) < len(raw) else "")


_POSTGRES_EPOCH = datetime(2000, 1, 1)


def _signed(raw: bytes) -> str:
    return str(int.from_bytes(raw, "big", signed=True))


def _unsigned(raw: bytes) -> str:
    return str(int.from_bytes(raw, "big"))


def _float4(raw: bytes) -> str:
    return repr(struct.unpack(">f", raw)[0])


def _float8(raw: bytes) -> str:
    return repr(struct.unpack(">d", raw)[0])


def _bool(raw: bytes) -> str:
    return "false" if raw == b"\x00" else "true"


def _timestamp(raw: bytes) -> str:
    micros = int.from_bytes(raw, "big", signed=True)
    try:
        return (_POSTGRES_EPOCH + timedelta(microseconds=micros)).isoformat(sep=" ")
    except OverflowError:  # also +-infinity, sent as the extreme int64 values
        return "infinity" if micros > 0 else "-infinity"


def _timestamptz(raw: bytes) -> str:
    text = _timestamp(raw)
    return text if text.endswith("infinity") else text + "+00"  # sent in UTC


def _date(raw: bytes) -> str:
    days = int.from_bytes(raw, "big", signed=True)
    try:
        return (date(2000, 1, 1) + timedelta(days=days)).isoformat()
    except OverflowError:
        return "infinity" if days > 0 else "-infinity"


def _uuid(raw: bytes) -> str:
    return str(uuid.UUID(bytes=raw))


@dataclass(frozen=True)
class _BinaryType:
    size: int  # bytes every value of the type has
    render: Callable[[bytes], str]
    quoted: bool  # shown as a quoted literal


# Type OID -> how its binary format reads, for fixed-size types.
_BINARY_TYPES = {
    16: _BinaryType(1, _bool, False),  # bool
    20: _BinaryType(8, _signed, False),  # int8
    21: _BinaryType(2, _signed, False),  # int2
    23: _BinaryType(4, _signed, False),  # int4
    26: _BinaryType(4, _unsigned, False),  # oid
    700: _BinaryType(4, _float4, False),  # float4
    701: _BinaryType(8, _float8, False),  # float8
    1082: _BinaryType(4, _date, True),  # date
    1114: _BinaryType(8, _timestamp, True),  # timestamp
    1184: _BinaryType(8, _timestamptz, True),  # timestamptz
    2950: _BinaryType(16, _uuid, True),  # uuid
}
# Types whose binary format is their text: "char", name, text, json, unknown, bpchar, varchar.
_BINARY_TEXT_TYPES = {18, 19, 25, 114, 705, 1042, 1043}
JSONB = 3802  # binary format: a version byte, 1, then the text
_BARE_TEXT_TYPES = {16, 20, 21, 23, 26, 700, 701, 1700}  # text-format values shown unquoted (numbers, bool)


def sql_literal(raw: bytes | None, fmt: int, type_oid: int, limit: int) -> str:
    """A parameter or result value as SQL would write it: NULL, a number or
    bool bare, anything else quoted. Text-format values are shown as sent;
    binary ones decoded when their type is known (fixed-size numbers, bool,
    date and time, uuid; text types and jsonb) and as '\\x<hex>' otherwise.
    Text is cut to `limit` characters, hex to `limit` digits."""
    if raw is None:
        return "NULL"
    if fmt == 0:
        text = _text_prefix(raw, limit)
        return text if type_oid in _BARE_TEXT_TYPES else _quote(text)
    if type_oid in _BINARY_TEXT_TYPES:
        return _quote(_text_prefix(raw, limit))
    if type_oid == JSONB and raw[:1] == b"\x01":
        return _quote(_text_prefix(raw[1:], limit))
    known = _BINARY_TYPES.get(type_oid)
    if known is None or known.size != len(raw):
        return _quote(_hex(raw, limit))
    text = known.render(raw)
    return _quote(text) if known.quoted else text


def render_error(fields: dict[str, str]) -> str:
    """An ErrorResponse as one line, `SEVERITY SQLSTATE: message`, then its
    detail and hint lines if it has them."""
    severity = fields.get("V") or fields.get("S") or "ERROR"  # V is never localised
    lines = [f"{severity} {fields.get('C', '?????')}: {fields.get('M', '')}"]
    if "D" in fields:
        lines.append(f"DETAIL: {fields['D']}")
    if "H" in fields:
        lines.append(f"HINT: {fields['H']}")
    return _cut("\n".join(lines), ERROR_LIMIT)


def _format_at(formats: list[int], index: int) -> int:
    """A value's format code from a Bind's list: none means all text, one applies to all."""
    if len(formats) == 1:
        return formats[0]
    return formats[index] if index < len(formats) else 0


# The conversation


@dataclass
class _Statement:
    sql: str
    param_oids: list[int]  # from the Parse, replaced by a ParameterDescription
    columns: list[Column] | None = None  # from a Describe of the statement


@dataclass
class _Portal:
    sql: str  # its statement's text, or a placeholder when the Parse was not seen
    params: str  # rendered, "" when none
    result_formats: list[int]
    statement: _Statement | None
    columns: list[Column] | None = None  # from a Describe of the portal

    def result_columns(self) -> list[Column] | None:
        if self.columns is not None:
            return self.columns
        return self.statement.columns if self.statement else None


class _Answer:
    """What the server answered one call, as the resp column: each result's
    CommandComplete tag (or error) in order, a result's column names and
    first rows after its tag, one per line."""

    __slots__ = ("_lines", "_results", "_rows", "_rows_chars", "_rows_omitted", "columns", "data_limit", "end_ns",
                 "messages", "result_formats")

    def __init__(self, data_limit: int, result_formats: list[int] | None = None) -> None:
        self.data_limit = data_limit
        self.result_formats = result_formats or []
        self.end_ns = 0  # timestamp of the answer's last message
        self.messages = 0
        self.columns: list[Column] | None = None  # of the result in progress
        self._lines: list[str] = []
        self._results = 0
        self._rows: list[str] = []  # rendered rows of the result in progress
        self._rows_chars = 0
        self._rows_omitted = False

    def wants_row(self) -> bool:
        return len(self._rows) < MAX_ROWS and self._rows_chars < self.data_limit

    def add_row(self, values: list[bytes | None]) -> None:
        """Render a row; each value is cut to what is left of data_limit."""
        columns, literals = self.columns, []
        for index, raw in enumerate(values):
            room = self.data_limit - self._rows_chars
            if room <= 0:
                literals.append("…")
                break
            type_oid = columns[index].type_oid if columns and index < len(columns) else 0
            literals.append(sql_literal(raw, _format_at(self.result_formats, index), type_oid, room))
            self._rows_chars += len(literals[-1]) + 2
        self._rows.append("(" + ", ".join(literals) + ")")

    def skip_row(self) -> None:
        self._rows_omitted = True

    def complete(self, tag: str) -> None:
        """A result ended with this tag."""
        lines = [tag]
        if self.data_limit and self.columns:
            lines.append("(" + ", ".join([c.name for c in self.columns]) + ")")  # a list is joined faster
        lines += self._rows
        if self._rows_omitted and self.data_limit:
            lines.append("…")
        self._add_result(lines)

    def fail(self, error: str) -> None:
        self._add_result([error])

    def _add_result(self, lines: list[str]) -> None:
        self._results += 1
        if self._results <= MAX_RESULTS:
            self._lines += lines
        self.columns = None
        self._rows, self._rows_chars, self._rows_omitted = [], 0, False

    def text(self) -> str:
        lines = self._lines
        if self._results > MAX_RESULTS:
            lines = [*lines, f"… {self._results - MAX_RESULTS} more results"]
        return "\n".join(lines)


@dataclass(slots=True)  # the objects made per request have slots: quicker to make and to read
class _Call:
    """A client request that makes a row: a Query, an Execute or a FunctionCall."""

    cmd: str
    start_ns: int
    sql: str
    params: str
    answer: _Answer
    portal: _Portal | None = None

    def request_text(self) -> str:
        return f"{self.sql} {self.params}" if self.params else self.sql


@dataclass(slots=True)
class _Batch:
    """Extended-protocol messages up to a Sync, whose ReadyForQuery ends their answers."""

    start_ns: int
    cmd: str = ""  # for a row of the batch itself: its first message, or the one that failed
    sql: str = ""
    lead_start_ns: int | None = None  # first byte of the messages since the last Execute
    executes: int = 0
    error: str = ""
    answers: list[str] = field(default_factory=list)

    def note(self, cmd: str, sql: str) -> None:
        if not self.cmd:
            self.cmd, self.sql = cmd, sql

    def answered(self, name: str) -> None:
        if len(self.answers) < MAX_ANSWER_NAMES:
            self.answers.append(name)


@dataclass(slots=True)
class _Pending:
    """A client message waiting for its answer."""

    kind: str  # its type byte, or STARTUP
    start_ns: int
    batch: _Batch | None = None
    call: _Call | None = None
    target: _Statement | _Portal | None = None  # what a Describe describes
    sql: str = ""  # the statement a Parse, Bind, Describe or Close names


_MALFORMED = object()  # what a request that does not decode decodes to
_BATCH_COMMANDS = {"P": "Parse", "B": "Bind", "D": "Describe", "E": "Execute", "C": "Close"}
_COMPLETIONS = {"P": ("1", "ParseComplete"), "B": ("2", "BindComplete"), "C": ("3", "CloseComplete")}
_READY_KINDS = {STARTUP, "Q", "F", "S"}  # client messages a ReadyForQuery ends the answer to
_WAITED_KINDS = {STARTUP, "Q", "F"}  # ... and whose answer clients wait for before sending more
_ASYNC_ANSWERS = {"N", "A", "S"}  # notices, notifications, parameter changes: at any time, answering nothing
_RESULT_TAGS = {"T", "D", "C", "I", "E", "V", "s", "G", "H", "W", "d", "c"}
_COPY_TAGS = {"G", "H", "W", "d", "c"}  # copy answers: the CommandComplete tag counts the rows
# Request kind -> the answers that only add to its call's answer and leave it waiting.
_FILLING = {"Q": _RESULT_TAGS, "F": _RESULT_TAGS, "E": {"D"} | _COPY_TAGS}


def _remember(registry: dict, name: str, value: object) -> None:
    """Store under name; past MAX_STATEMENTS, forget the entry stored longest ago."""
    registry.pop(name, None)
    registry[name] = value
    if len(registry) > MAX_STATEMENTS:
        del registry[next(iter(registry))]


def _unseen(kind: str, name: str) -> str:
    return f'<{kind} "{name}" not seen>' if name else f"<unnamed {kind} not seen>"


class PgsqlStitcher:
    """Pairs one connection's client messages with the server's answers, in
    order, and makes pgsql_events rows:

    - a Query: one row, when its ReadyForQuery arrives; resp lists every
      statement's result.
    - an Execute: one row, when its CommandComplete (EmptyQueryResponse,
      PortalSuspended, ErrorResponse) arrives. req is the text of the
      statement its portal was bound from, followed by the bound parameters
      as a comment: `... WHERE id = $1 /* $1 = 42 */`. The row's time is the
      first byte of the Parse/Bind/Describe messages that led to it (since
      the previous Execute of the batch), its latency runs to the last
      message of the Execute's answer.
    - a Sync batch that executed nothing (a statement prepared, described or
      closed), or whose failure no Execute took: one row at its
      ReadyForQuery, named after its first message (or the one that failed),
      resp naming the answers (ParseComplete, ...) or showing the error.
    - a FunctionCall: one row, like a Query.

    The startup and authentication exchange makes no rows. An error in a
    batch goes to the batch's next Execute; the server skips the rest of the
    batch, and so do the rows. A ReadyForQuery ends whatever it answers
    even if answers before it were lost.
    """

    def __init__(self, data_limit: int = 1024) -> None:
        self.data_limit = data_limit  # characters of rows, and of parameters, kept per row
        self.malformed = 0  # messages whose payload did not decode
        self.unmatched = 0  # answers (counted by ReadyForQuery) that matched no request
        self.dropped_requests = 0  # requests past MAX_PENDING, their answers never paired
        self._statements: dict[str, _Statement] = {}
        self._portals: dict[str, _Portal] = {}
        self._pending: deque[_Pending] = deque()
        self._batch: _Batch | None = None  # the client's batch in progress
        self._skip_to_sync = False  # the server discards the client's batch after an error
        self._lost_at: int | None = None  # answers were lost; the time of the syscall that lost them
        self._rows: list[dict] = []
        self._last_decoded: dict[str, tuple[bytes, object]] = {}  # tag -> payload and values, see _decode_repeated

    def take_rows(self) -> list[dict]:
        rows, self._rows = self._rows, []
        return rows

    def _decode(self, is_request: bool, msg: PgMessage, default: object = None) -> object:
        try:
            return decode(is_request, msg)
        except Malformed:
            if not msg.truncated:
                self.malformed += 1
            return default

    def _decode_repeated(self, msg: PgMessage) -> object:
        """The values of a server message that a connection repeats byte for
        byte (RowDescription, CommandComplete): the last of each tag is kept,
        and its values shared (they are never changed)."""
        last = self._last_decoded.get(msg.tag)
        if last is not None and last[0] == msg.payload:
            return last[1]
        value = self._decode(False, msg)
        if value is not None and not msg.truncated:
            self._last_decoded[msg.tag] = (msg.payload, value)
        return value

    def _queue(self, item: _Pending) -> None:
        self._pending.append(item)
        if len(self._pending) > MAX_PENDING:
            self._pending.popleft()
            self.dropped_requests += 1

    def _emit(self, time_ns: int, cmd: str, req: str, resp: str, end_ns: int) -> None:
        self._rows.append({"time_ns": time_ns, "req_cmd": cmd, "req": req, "resp": resp, "latency": end_ns - time_ns})

    def _emit_call(self, call: _Call) -> None:
        self._emit(call.start_ns, call.cmd, call.request_text(), call.answer.text(), call.answer.end_ns)

    # The client's messages

    def add_request(self, msg: PgMessage) -> None:
        handler = _REQUEST_HANDLERS.get(msg.tag)
        if handler is None:  # Flush, CopyData, passwords, ...: no answer of their own
            return
        value = self._decode(True, msg, _MALFORMED)
        if value is not _MALFORMED:  # a server ends the connection that sends it one, unanswered
            handler(self, msg, value)

    def _on_startup(self, msg: PgMessage, params: object) -> None:
        self._statements.clear()
        self._portals.clear()
        self._queue(_Pending(STARTUP, msg.start_ns))

    def _on_query(self, msg: PgMessage, sql: str) -> None:
        call = _Call("Query", msg.start_ns, _cut(sql, SQL_LIMIT), "", _Answer(self.data_limit))
        self._queue(_Pending("Q", msg.start_ns, call=call))

    def _on_function_call(self, msg: PgMessage, value: tuple) -> None:
        oid, formats, args, result_format = value
        params = self._render_params(args, formats, [], cut=False)
        answer = _Answer(self.data_limit, [result_format])
        call = _Call("FunctionCall", msg.start_ns, f"<function {oid}>", params, answer)
        self._queue(_Pending("F", msg.start_ns, call=call))

    def _on_sync(self, msg: PgMessage, _: object) -> None:
        batch = self._batch or _Batch(msg.start_ns)
        self._batch, self._skip_to_sync = None, False
        self._queue(_Pending("S", msg.start_ns, batch))

    def _on_extended(self, msg: PgMessage, value: object) -> None:
        if self._skip_to_sync:
            return
        if self._batch is None:
            self._batch = _Batch(msg.start_ns)
        batch = self._batch
        if batch.lead_start_ns is None:
            batch.lead_start_ns = msg.start_ns
        item = _Pending(msg.tag, msg.start_ns, batch)
        _EXTENDED_REQUESTS[msg.tag](self, item, value)
        batch.note(_BATCH_COMMANDS[msg.tag], item.sql)
        self._queue(item)

    def _parse(self, item: _Pending, value: tuple[str, str, list[int]]) -> None:
        name, sql, oids = value
        item.sql = _cut(sql, SQL_LIMIT)
        _remember(self._statements, name, _Statement(item.sql, oids))

    def _bind(self, item: _Pending, bind: BindMessage) -> None:
        statement = self._statements.get(bind.statement)
        item.sql = statement.sql if statement else _unseen("statement", bind.statement)
        oids = statement.param_oids if statement else []
        params = self._render_params(bind.params, bind.param_formats, oids, bind.cut)
        _remember(self._portals, bind.portal, _Portal(item.sql, params, bind.result_formats, statement))

    def _describe(self, item: _Pending, value: tuple[str, str]) -> None:
        kind, name = value
        registry, noun = self._named(kind)
        item.target = registry.get(name)
        item.sql = item.target.sql if item.target else _unseen(noun, name)

    def _execute(self, item: _Pending, name: str) -> None:
        batch = item.batch
        start_ns, batch.lead_start_ns = batch.lead_start_ns, None
        batch.executes += 1
        portal = self._portals.get(name) or _Portal(_unseen("portal", name), "", [], None)
        answer = _Answer(self.data_limit, portal.result_formats)
        item.call = _Call("Execute", start_ns, portal.sql, portal.params, answer, portal)
        item.sql = portal.sql

    def _close(self, item: _Pending, value: tuple[str, str]) -> None:
        kind, name = value
        registry, noun = self._named(kind)
        closed = registry.pop(name, None)
        item.sql = closed.sql if closed else _unseen(noun, name)

    def _named(self, kind: str) -> tuple[dict, str]:
        """The prepared statements ('S') or the portals ('P'), and what one is called."""
        return (self._statements, "statement") if kind == "S" else (self._portals, "portal")

    def _render_params(self, values: list, formats: list[int], oids: list[int], cut: bool) -> str:
        """Bound values as a comment, `/* $1 = 42, $2 = 'x' */`; each value is
        cut to what is left of data_limit characters."""
        if not values or not self.data_limit:
            return ""
        parts, room = [], self.data_limit
        for index, raw in enumerate(values):
            if room <= 0:
                cut = True
                break
            type_oid = oids[index] if index < len(oids) else 0
            parts.append(f"${index + 1} = {sql_literal(raw, _format_at(formats, index), type_oid, room)}")
            room -= len(parts[-1]) + 2
        if cut:
            parts.append("…")
        return f"/* {', '.join(parts)} */"

    # The server's messages

    def answers_lost(self, time_ns: int) -> None:
        """The server's framing was lost in a gap whose syscall returned at
        time_ns: the answers waited for may have ended in it. Until the next
        ReadyForQuery, an answer that cannot continue the oldest request's
        ends that request, as does one that began after the next request."""
        if self._pending:
            self._lost_at = time_ns

    def add_response(self, msg: PgMessage) -> None:
        head = self._pending[0] if self._pending else None
        if (head is not None and msg.tag in _FILLING.get(head.kind, ()) and self._lost_at is None
                and msg.start_ns >= head.start_ns):
            self._fill(head.call, msg)  # the usual case: what the loop below comes to, without the dispatch
            return
        if msg.tag in _ASYNC_ANSWERS:
            return
        while True:
            head = self._pending[0] if self._pending else None
            if head is None or msg.start_ns < head.start_ns:  # it answers a request not seen
                self.unmatched += msg.tag == "Z"
                return
            if self._lost_at is not None and self._answer_over(head, msg):
                self._finish_incomplete(self._lost_at)
                continue
            if self._dispatch(head, msg):
                break
            if self._lost_at is None:
                self.unmatched += 1
                return
            self._finish_incomplete(self._lost_at)
        if msg.tag == "Z":
            self._lost_at = None

    def _answer_over(self, head: _Pending, msg: PgMessage) -> bool:
        """The answer to a StartupMessage, Query or FunctionCall ends before
        the client sends anything else: if the next request began before msg,
        the answer ended in the lost bytes."""
        pending = self._pending
        return head.kind in _WAITED_KINDS and len(pending) > 1 and pending[1].start_ns <= msg.start_ns

    def _dispatch(self, head: _Pending, msg: PgMessage) -> bool:
        """Apply msg to the oldest waiting request; False if it cannot answer it."""
        if msg.tag == "E" and head.kind in _BATCH_COMMANDS:
            self._fail_batch(head, msg)
            return True
        if msg.tag == "Z" and head.kind not in _READY_KINDS:
            if self._lost_at is not None:
                return False
            self.unmatched += 1  # answers went missing unnoticed; the ReadyForQuery still ends the batch
            while self._pending and self._pending[0].kind not in _READY_KINDS:
                self._pending.popleft()
            if not self._pending:
                return True
            head = self._pending[0]
        return _ANSWER_HANDLERS[head.kind](self, head, msg)

    def _finish_incomplete(self, end_ns: int) -> None:
        """The oldest request's answer ended unseen: make its row from what arrived."""
        head = self._pending.popleft()
        if head.call is not None and head.call.answer.messages:
            answer = head.call.answer
            answer.end_ns = max(answer.end_ns, end_ns)
            answer.complete(INCOMPLETE)
            self._emit_call(head.call)

    def _fill(self, call: _Call | None, msg: PgMessage) -> None:
        """Add one message of a Query's, Execute's or FunctionCall's answer."""
        if call is None:
            return
        answer, tag = call.answer, msg.tag
        answer.end_ns = msg.end_ns
        answer.messages += 1
        if answer.columns is None and call.portal is not None:  # described in an earlier answer
            answer.columns = call.portal.result_columns()
        if tag == "D":
            self._data_row(call, msg)
        elif tag == "T":
            answer.columns = self._decode_repeated(msg)
        elif tag == "C":
            answer.complete(self._decode_repeated(msg) or "?")
        elif tag == "I":
            answer.complete("EMPTY QUERY")
        elif tag == "s":
            answer.complete("SUSPENDED")
        elif tag == "E":
            answer.fail(render_error(self._decode(False, msg) or {}))
        elif tag == "V":
            value = self._decode(False, msg)
            answer.complete(sql_literal(value, _format_at(answer.result_formats, 0), 0, self.data_limit))

    def _data_row(self, call: _Call, msg: PgMessage) -> None:
        answer = call.answer
        if not answer.wants_row():
            answer.skip_row()
            return
        values = _whole_row(msg.payload)
        if values is None:
            values = self._decode(False, msg)
        if values is not None:
            answer.add_row(values)

    def _fail_batch(self, head: _Pending, msg: PgMessage) -> None:
        """An ErrorResponse to a Parse, Bind, Describe, Execute or Close: the
        server skips the batch's messages up to its Sync."""
        error = render_error(self._decode(False, msg) or {})
        batch, call = head.batch, None
        while self._pending and self._pending[0].kind in _BATCH_COMMANDS:
            item = self._pending.popleft()
            if call is None and item.call is not None:
                call = item.call
        if call is not None:
            call.answer.end_ns = msg.end_ns
            call.answer.fail(error)
            self._emit_call(call)
        else:
            batch.cmd, batch.sql, batch.error = _BATCH_COMMANDS[head.kind], head.sql, error
        self._skip_to_sync = not self._pending

    def _answer_startup(self, head: _Pending, msg: PgMessage) -> bool:
        if msg.tag == "Z":
            self._pending.popleft()
        return True  # authentication requests, BackendKeyData, a FATAL error: no rows

    def _answer_call(self, head: _Pending, msg: PgMessage) -> bool:
        if msg.tag == "Z":
            self._pending.popleft()
            if head.call is not None:
                head.call.answer.end_ns = msg.end_ns
                self._emit_call(head.call)
            return True
        if msg.tag not in _RESULT_TAGS:
            return False
        self._fill(head.call, msg)
        return True

    def _answer_completion(self, head: _Pending, msg: PgMessage) -> bool:
        tag, name = _COMPLETIONS[head.kind]
        if msg.tag != tag:
            return False
        self._pending.popleft()
        head.batch.answered(name)
        return True

    def _answer_describe(self, head: _Pending, msg: PgMessage) -> bool:
        target, tag = head.target, msg.tag
        if tag == "t":
            oids = self._decode(False, msg)
            if isinstance(target, _Statement) and oids is not None:
                target.param_oids = oids
            head.batch.answered("ParameterDescription")
            return True
        if tag not in ("T", "n"):
            return False
        self._pending.popleft()
        head.batch.answered("RowDescription" if tag == "T" else "NoData")
        columns = self._decode_repeated(msg) if tag == "T" else []
        if target is not None and columns is not None:
            target.columns = columns
        return True

    def _answer_execute(self, head: _Pending, msg: PgMessage) -> bool:
        tag = msg.tag
        if tag == "D" or tag in _COPY_TAGS:
            self._fill(head.call, msg)
            return True
        if tag not in ("C", "I", "s"):
            return False
        self._pending.popleft()
        self._fill(head.call, msg)
        if head.call is not None:
            self._emit_call(head.call)
        return True

    def _answer_sync(self, head: _Pending, msg: PgMessage) -> bool:
        batch = head.batch
        if msg.tag == "E":  # the implicit transaction failed to commit
            batch.cmd, batch.error = "Sync", render_error(self._decode(False, msg) or {})
            return True
        if msg.tag != "Z":
            return False
        self._pending.popleft()
        if batch.cmd and (batch.error or not batch.executes):
            resp = batch.error or ", ".join(batch.answers)
            self._emit(batch.start_ns, batch.cmd, batch.sql, resp, msg.end_ns)
        return True

    def close(self) -> None:
        """The connection closed: the oldest request's answer, if it began
        (a FATAL error, rows of a killed query), makes a row; the rest are dropped."""
        if self._pending:
            self._finish_incomplete(0)
        self._pending.clear()


_REQUEST_HANDLERS: dict[str, Callable[[PgsqlStitcher, PgMessage, object], None]] = {
    STARTUP: PgsqlStitcher._on_startup,
    "Q": PgsqlStitcher._on_query,
    "F": PgsqlStitcher._on_function_call,
    "S": PgsqlStitcher._on_sync,
    **{tag: PgsqlStitcher._on_extended for tag in _BATCH_COMMANDS},
}
_EXTENDED_REQUESTS: dict[str, Callable[[PgsqlStitcher, _Pending, object], None]] = {
    "P": PgsqlStitcher._parse,
    "B": PgsqlStitcher._bind,
    "D": PgsqlStitcher._describe,
    "E": PgsqlStitcher._execute,
    "C": PgsqlStitcher._close,
}
_ANSWER_HANDLERS: dict[str, Callable[[PgsqlStitcher, _Pending, PgMessage], bool]] = {
    STARTUP: PgsqlStitcher._answer_startup,
    "Q": PgsqlStitcher._answer_call,
    "F": PgsqlStitcher._answer_call,
    "P": PgsqlStitcher._answer_completion,
    "B": PgsqlStitcher._answer_completion,
    "C": PgsqlStitcher._answer_completion,
    "D": PgsqlStitcher._answer_describe,
    "E": PgsqlStitcher._answer_execute,
    "S": PgsqlStitcher._answer_sync,
}


class PgsqlTrace(PairedTrace):
    """The socket tracer's view of one PostgreSQL connection."""

    table = "pgsql_events"

    def __init__(self, body_limit: int = 1024) -> None:
        super().__init__(PgsqlParser(is_request=True), PgsqlParser(is_request=False))
        self.stitcher = PgsqlStitcher(data_limit=body_limit)
        self.encrypted = False  # the client's encryption request was accepted: nothing more is parsed

    @property
    def parse_errors(self) -> int:
        stitcher = self.stitcher
        return self.requests.parse_errors + self.responses.parse_errors + stitcher.malformed + stitcher.unmatched

    def on_gap(self, request_side: bool, lost_bytes: int, time_ns: int) -> None:
        resyncs = self.responses.resyncs
        super().on_gap(request_side, lost_bytes, time_ns)
        if not request_side and self.responses.resyncs != resyncs:  # answers may have ended in the gap
            self.stitcher.answers_lost(time_ns)

    def on_close(self, time_ns: int) -> None:
        self.requests.stop()
        self.responses.stop()
        self.stitcher.close()

    def take_rows(self) -> list[dict]:
        """The stitcher collects the rows: they come of requests, responses and the close alike."""
        return self.stitcher.take_rows()

    def _add(self, request_side: bool, messages: list[PgMessage]) -> None:
        if request_side:
            self._add_requests(messages)
        else:
            self._add_responses(messages)

    def _add_requests(self, messages: list[PgMessage]) -> None:
        for msg in messages:
            if msg.tag in (SSL_REQUEST, GSSENC_REQUEST):
                self.responses.expect_encryption_answer()
            self.stitcher.add_request(msg)

    def _add_responses(self, messages: list[PgMessage]) -> None:
        for msg in messages:
            if msg.tag != ENCRYPTION_RESPONSE:
                self.stitcher.add_response(msg)
            elif msg.payload != b"N":
                self.encrypted = True
                self.requests.stop()
