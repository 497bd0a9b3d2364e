"""Redis: the bytes of one connection to commands and replies, paired into redis_events rows.

This module owns the Redis serialization protocol as clients and servers speak
it on the wire (RESP2, RESP3 and inline commands) for traced traffic, which may
begin mid-message, lose bytes or carry junk:

- `RespParser` parses one direction incrementally: `feed()` takes the next
  contiguous bytes with the time of the syscall that carried them and returns
  the messages they complete; `gap()` says bytes were lost. Requests are what
  Redis itself accepts: an array of bulk strings, or an inline command (a text
  line such as `PING`, as telnet-style clients send). Replies are any RESP2 or
  RESP3 value; RESP3 attributes are parsed and dropped.
- `command_of` turns a request into a `RedisCommand`: the upper-cased name
  (with the subcommand of a container command: `CLIENT SETNAME`) and the
  arguments as text, passwords hidden.
- `render_reply` turns a reply into the text of the resp column.
- `RedisStitcher` pairs commands with replies in order and tells out-of-band
  replies (pub/sub messages, RESP3 pushes, the MONITOR feed) from answers.
- `RedisTrace` is the socket tracer's view of one connection.

After malformed input or lost bytes outside a bulk string of known length, the
parser drops the message in progress (one parse error, if there was one) and
resynchronises on the next plausible message start at a line start (after a LF
or a gap): `*<count>\\r\\n$<length>\\r\\n` for requests, a type byte and a
well-formed line for replies. Lost bytes inside a bulk string are counted into
its size and framing goes on.

Whole messages of the usual shapes in a syscall's bytes fed at a message
boundary (a command array; a reply that is a line, an integer, a bulk string
or an array of bulk strings) are taken from them directly, without the step
loop, as the step loop would take them; what follows goes to the step loop.

Memory is bounded: a line (inline command, simple string, error) longer than
LINE_LIMIT or a nesting deeper than MAX_DEPTH is malformed; of each string the
first `value_limit` bytes are kept, of each message at most MAX_KEPT_VALUES
values and MESSAGE_KEEP_FACTOR * value_limit string bytes, the rest is counted.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from json.encoder import encode_basestring

from tracedb.protocols.base import Malformed, PairedTrace, TimedInput

LINE_LIMIT = 64 * 1024  # Redis's own limit on an inline command (PROTO_INLINE_MAX_SIZE)
NUMBER_LINE_LIMIT = 24  # a type byte, a length or integer, CRLF
MAX_LENGTH = 2**32  # of a bulk string or aggregate; Redis's default proto-max-bulk-len is 512 MiB
MAX_DEPTH = 16  # nested aggregates
MAX_KEPT_VALUES = 256  # values kept of one message
MESSAGE_KEEP_FACTOR = 4  # string bytes kept of one message, in value_limits
MAX_PENDING = 1024  # commands waiting for their replies
NAME_LIMIT = 64  # characters of a command name
RESYNC_LINE_LIMIT = 512  # bytes of a simple string or error line taken as a resync candidate

LF = ord("\n")
CR = ord("\r")

# Commands whose first argument names a subcommand: req_cmd holds both words.
CONTAINER_COMMANDS = frozenset(
    "ACL CLIENT CLUSTER COMMAND CONFIG DEBUG FUNCTION LATENCY MEMORY MODULE OBJECT PUBSUB"
    " SCRIPT SENTINEL SLOWLOG XGROUP XINFO".split()
)

# Where the parser cannot trust its position (the start of a stream that may
# have been joined mid-message), an inline command must begin with one of
# these: otherwise the tail of a lost bulk string would read as a command.
COMMANDS = frozenset(
    b"""APPEND ASKING AUTH BGREWRITEAOF BGSAVE BITCOUNT BITFIELD BITFIELD_RO BITOP BITPOS BLMOVE
    BLMPOP BLPOP BRPOP BRPOPLPUSH BZMPOP BZPOPMAX BZPOPMIN COPY DBSIZE DECR DECRBY DEL DISCARD
    DUMP ECHO EVAL EVAL_RO EVALSHA EVALSHA_RO EXEC EXISTS EXPIRE EXPIREAT EXPIRETIME FAILOVER
    FCALL FCALL_RO FLUSHALL FLUSHDB GEOADD GEODIST GEOHASH GEOPOS GEORADIUS GEORADIUS_RO
    GEORADIUSBYMEMBER GEORADIUSBYMEMBER_RO GEOSEARCH GEOSEARCHSTORE GET GETBIT GETDEL GETEX
    GETRANGE GETSET HDEL HELLO HEXISTS HEXPIRE HGET HGETALL HINCRBY HINCRBYFLOAT HKEYS HLEN
    HMGET HMSET HPERSIST HPEXPIRE HRANDFIELD HSCAN HSET HSETNX HSTRLEN HTTL HVALS INCR INCRBY
    INCRBYFLOAT INFO KEYS LASTSAVE LCS LINDEX LINSERT LLEN LMOVE LMPOP LOLWUT LPOP LPOS LPUSH
    LPUSHX LRANGE LREM LSET LTRIM MGET MIGRATE MONITOR MOVE MSET MSETNX MULTI PERSIST PEXPIRE
    PEXPIREAT PEXPIRETIME PFADD PFCOUNT PFMERGE PING PSETEX PSUBSCRIBE PSYNC PTTL PUBLISH
    PUNSUBSCRIBE QUIT RANDOMKEY READONLY READWRITE RENAME RENAMENX REPLCONF REPLICAOF RESET
    RESTORE ROLE RPOP RPOPLPUSH RPUSH RPUSHX SADD SAVE SCAN SCARD SDIFF SDIFFSTORE SELECT SET
    SETBIT SETEX SETNX SETRANGE SHUTDOWN SINTER SINTERCARD SINTERSTORE SISMEMBER SLAVEOF
    SMEMBERS SMISMEMBER SMOVE SORT SORT_RO SPOP SPUBLISH SRANDMEMBER SREM SSCAN SSUBSCRIBE
    STRLEN SUBSCRIBE SUBSTR SUNION SUNIONSTORE SUNSUBSCRIBE SWAPDB SYNC TIME TOUCH TTL TYPE
    UNLINK UNSUBSCRIBE UNWATCH WAIT WAITAOF WATCH XACK XADD XAUTOCLAIM XCLAIM XDEL XLEN
    XPENDING XRANGE XREAD XREADGROUP XREVRANGE XSETID XTRIM ZADD ZCARD ZCOUNT ZDIFF ZDIFFSTORE
    ZINCRBY ZINTER ZINTERCARD ZINTERSTORE ZLEXCOUNT ZMPOP ZMSCORE ZPOPMAX ZPOPMIN ZRANDMEMBER
    ZRANGE ZRANGEBYLEX ZRANGEBYSCORE ZRANGESTORE ZRANK ZREM ZREMRANGEBYLEX ZREMRANGEBYRANK
    ZREMRANGEBYSCORE ZREVRANGE ZREVRANGEBYLEX ZREVRANGEBYSCORE ZREVRANK ZSCAN ZSCORE ZUNION
    ZUNIONSTORE""".split()
) | {name.encode() for name in CONTAINER_COMMANDS}

_COMMAND_WORD = re.compile(rb"[A-Za-z][A-Za-z0-9_.-]{0,63}")
_INTEGER = re.compile(rb"-?[0-9]{1,19}")
_LENGTH = re.compile(rb"0|[1-9][0-9]{0,9}")
_BULK_HEADER = re.compile(rb"\$(0|[1-9][0-9]{0,9})\r\n")
_ARRAY_LINE = re.compile(rb"\*([1-9][0-9]{0,9})")  # of a non-empty array, without its CRLF
_DOUBLE = re.compile(rb"[-+]?(?:inf|nan|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)")
_BIG_NUMBER = re.compile(rb"[-+]?[0-9]+")
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")

# A plausible message start, matched at a line start while resynchronising.
_REQUEST_START = re.compile(rb"\*[1-9][0-9]{0,9}\r\n\$(?:0|[1-9][0-9]{0,9})\r\n")
_REPLY_START = re.compile(
    rb"\+[\x20-\x7e]{0,%d}\r\n" % RESYNC_LINE_LIMIT
    + rb"|-[A-Z][A-Za-z_-]*(?:\x20[\x20-\x7e]{0,%d})?\r\n" % RESYNC_LINE_LIMIT
    + rb"|:-?[0-9]{1,19}\r\n"
    + rb"|[$*](?:-1|0|[1-9][0-9]{0,9})\r\n"
    + rb"|[!=%~>|](?:0|[1-9][0-9]{0,9})\r\n"
    + rb"|_\r\n|\#[tf]\r\n|,[-+.0-9a-z]{1,32}\r\n|\(-?[0-9]{1,%d}\r\n" % RESYNC_LINE_LIMIT
)
_START_WINDOW = RESYNC_LINE_LIMIT + 32  # bytes after which a candidate line is surely decided

# Inline commands are split as Redis splits them (sdssplitargs): on blanks,
# with "double quotes" (backslash escapes) and 'single quotes' (\' only).
_INLINE_ARG = re.compile(
    rb"""[ \t]*(?:"((?:\\.|[^"\\])*)"(?=[ \t]|$)|'((?:\\'|[^'])*)'(?=[ \t]|$)|([^ \t"'][^ \t]*))"""
)
_ESCAPE = re.compile(rb"\\(x[0-9a-fA-F]{2}|.)", re.S)
_ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"a": b"\a"}
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")

# Pub/sub: a (P|S)(UN)SUBSCRIBE is answered by confirmations, arrays or pushes
# whose first element is the command's name in lower case.
_CONFIRMATION_KINDS = {
    name: name.lower().encode()
    for name in ("SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE")
}
_CONFIRMATION_REPLY_KINDS = frozenset(_CONFIRMATION_KINDS.values())
_UNSUBSCRIBE_KINDS = frozenset(kind for kind in _CONFIRMATION_REPLY_KINDS if kind.endswith(b"unsubscribe"))
_MESSAGE_SIZES = {b"message": 3, b"pmessage": 4, b"smessage": 3}  # elements of an out-of-band message

_REDACTED = "(redacted)"
_PASSWORD_COMMANDS = frozenset(("AUTH", "HELLO", "MIGRATE", "ACL SETUSER", "CONFIG SET"))
_PASSWORD_SETTINGS = frozenset(("REQUIREPASS", "MASTERAUTH"))
# A str as JSON, as json.dumps(ensure_ascii=False) writes it, with its C encoder;
# a list of them is joined here, which costs a fraction of json.dumps.
_json = encode_basestring


@dataclass(slots=True)
class RespValue:
    """One RESP value.

    kind is the type byte as a character ("+", "$", "*", ...); every null is
    "_". value holds bytes for strings, errors, doubles and big numbers (the
    kept start), int for integers, bool for booleans, None for null and the
    kept elements for aggregates (maps and attributes flattened to key,
    value, ...). size is the full length in bytes of a string, or the number
    of elements of an aggregate, kept or not.
    """

    kind: str
    value: object
    size: int = 0


@dataclass(slots=True)
class RespMessage:
    value: RespValue
    start_ns: int  # timestamp of the chunk holding the message's first byte
    end_ns: int  # timestamp of the chunk holding its last byte
    lost_before_ns: int | None = None  # the parser lost framing at this time since the previous message


@dataclass(slots=True)
class _Open:
    """An aggregate whose elements are still arriving."""

    value: RespValue
    remaining: int
    kept: bool  # its elements may be kept


class RespParser(TimedInput):
    """Incremental parser for one direction of one connection.

    Parsing is a loop of steps: a frame (type byte and line, and a bulk string
    whole when it has arrived), the rest of a bulk string, or the search for a
    message start. `_step` holds the one to run next; it consumes what it can
    and returns whether to run again. Open aggregates wait on `_stack`. A step
    that finds malformed input raises Malformed with the position at or
    before the offending bytes, where the search for the next message begins.
    Before the steps, `_take_whole_messages` takes the whole messages that
    begin a syscall's bytes when the stream is between messages.
    """

    def __init__(self, is_request: bool, value_limit: int = 1024) -> None:
        super().__init__()
        self.is_request = is_request
        self.value_limit = value_limit
        self.parse_errors = 0
        self.resyncs = 0
        self._trusted = False  # _pos follows a whole message (a stream may be joined mid-message)
        self._candidate = False  # the message in progress was found by resynchronising
        self._line_start = False  # resynchronising: _pos is just after a LF or a gap
        self._lost_at: int | None = None  # when framing was last lost, until the next message
        # The fast path's reader of one message (an inline command is the step loop's).
        self._whole_message = _whole_command if is_request else _whole_reply
        self._begin_message()
        self._goto(RespParser._step_frame)

    # The interface

    def feed(self, data: bytes, timestamp_ns: int) -> list[RespMessage]:
        """Parse the next bytes of the stream, carried by a syscall at
        timestamp_ns; return the messages they complete, in order.

        Whole messages at a message boundary are taken straight from data
        (the fast path); the rest goes through the step loop."""
        if not data:
            return []
        done: list[RespMessage] = []
        if self._at_boundary():
            taken = self._take_whole_messages(data, timestamp_ns, done)
            if taken == len(data):
                return done
            data = data[taken:]
        self._append_input(data, timestamp_ns)
        self._run(done)
        self._compact()
        return done

    def gap(self, lost_bytes: int, timestamp_ns: int) -> list[RespMessage]:
        """lost_bytes bytes are missing here; timestamp_ns is when the syscall
        that moved them returned.

        Inside a bulk string the lost bytes are counted as its bytes and
        parsing goes on (this is how values past the kernel's capture limit
        arrive); a message that ends inside the gap is returned. Otherwise,
        or for what the gap holds past the string, the message in progress is
        dropped and parsing resumes at the next plausible message start."""
        done: list[RespMessage] = []
        if lost_bytes <= 0:
            return done
        if self._step is RespParser._step_bulk:
            lost_bytes -= self._skip_bulk(lost_bytes, timestamp_ns, done)
            if not lost_bytes:
                return done
        if self._in_message() and not self._candidate:
            self.parse_errors += 1
        self._discard_input()
        self._lose_framing(timestamp_ns)
        self._line_start = True
        return done

    @property
    def synchronised(self) -> bool:
        """Whether the parser knows where messages start (not resynchronising)."""
        return self._step is not RespParser._step_resync

    @property
    def buffered_bytes(self) -> int:
        """Bytes held as unparsed input (kept values are bounded separately)."""
        return len(self._buf) - self._pos

    # The loop and its bookkeeping

    def _drop_malformed(self) -> None:
        # A candidate that turns out not to be a message was not one: the
        # error was counted when framing was lost.
        if not self._candidate:
            self.parse_errors += 1
        self._lose_framing(self._time_at(min(self._pos, len(self._buf) - 1)))
        self._line_start = False

    def _lose_framing(self, timestamp_ns: int) -> None:
        self.resyncs += 1
        self._lost_at = timestamp_ns
        self._trusted = False
        self._begin_message()
        self._goto(RespParser._step_resync)

    def _begin_message(self, candidate: bool = False) -> None:
        self._candidate = candidate
        self._stack: list[_Open] = []
        self._start_ns: int | None = None  # from the message's first byte on
        self._kept_values = 0
        self._kept_bytes = 0

    def _in_message(self) -> bool:
        return self.synchronised and self._start_ns is not None

    def _emit(self, value: RespValue, done: list[RespMessage]) -> None:
        done.append(RespMessage(value, self._start_ns, self._time_at(self._pos - 1), self._lost_at))
        self._lost_at = None
        self._trusted = True
        self._begin_message()
        self._goto(RespParser._step_frame)

    def _line_end(self, limit: int) -> int:
        """Index just past the LF that ends the line at _pos, or -1 while it
        has not arrived. A line longer than limit bytes is malformed. The
        search resumes where it stopped, so bytes fed one at a time are not
        scanned again."""
        buf, pos = self._buf, self._pos
        lf = buf.find(b"\n", max(self._scan_from, pos), pos + limit)
        if lf >= 0:
            self._scan_from = 0
            return lf + 1
        if len(buf) - pos >= limit:
            raise Malformed
        self._scan_from = len(buf)
        return -1

    # Keeping values within bounds

    def _room(self) -> int:
        """Bytes the next string value may keep."""
        if self._stack and not self._stack[-1].kept:
            return 0
        return _string_room(self.value_limit, self._kept_values, self._kept_bytes)

    def _attach(self, value: RespValue) -> bool:
        """Make value an element of the open aggregate, if there is room to
        keep it; return whether it is kept."""
        if not self._stack:
            return True  # the message itself
        parent = self._stack[-1]
        if not parent.kept or self._kept_values >= MAX_KEPT_VALUES:
            return False
        self._kept_values += 1
        parent.value.value.append(value)
        if isinstance(value.value, bytes):
            self._kept_bytes += len(value.value)
        return True

    def _complete(self, value: RespValue, done: list[RespMessage]) -> None:
        """A value ended: count it off the aggregates holding it, and emit
        the message once none is left open."""
        if value.kind == "|":
            return  # an attribute annotates the value after it: no element, no message
        self._attach(value)
        while self._stack:
            top = self._stack[-1]
            top.remaining -= 1
            if top.remaining:
                return
            self._stack.pop()
            if top.value.kind == "|":
                return
            value = top.value
        self._emit(value, done)

    # The steps

    def _step_frame(self, done: list[RespMessage]) -> bool:
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            return False
        if self._start_ns is None:
            self._start_ns = self._time_at(pos)
        type_byte = buf[pos]
        if type_byte == 0x24 and self._stack and self._take_whole_bulks(done):  # "$"
            return True
        if self.is_request:
            if not self._stack and type_byte != 0x2A:  # "*"
                return self._inline_command(done)
            if self._stack and type_byte != 0x24:  # Redis takes only bulk strings as arguments
                raise Malformed
        frame = _FRAMES.get(type_byte)
        if frame is None:
            raise Malformed
        parse, limit = frame
        end = self._line_end(limit)
        if end < 0:
            return False
        if end - pos < 3 or buf[end - 2] != CR:
            raise Malformed
        parse(self, chr(type_byte), bytes(buf[pos + 1 : end - 2]), end, done)
        return True

    def _take_whole_bulks(self, done: list[RespMessage]) -> bool:
        """Take the bulk strings at _pos that have wholly arrived, one after
        another, while an aggregate waits for elements: the usual shape of a
        command's arguments and of MGET or LRANGE replies, taken here without
        a step each. Return whether any was taken; whatever else comes is
        left to the general path, which also judges malformed input."""
        buf, stack, taken = self._buf, self._stack, False
        while stack:
            pos = self._pos
            header = _BULK_HEADER.match(buf, pos, pos + NUMBER_LINE_LIMIT)
            if header is None:
                return taken
            start, length = header.end(), int(header.group(1))
            stop = start + length
            if length > MAX_LENGTH or len(buf) < stop + 2 or buf[stop] != CR or buf[stop + 1] != LF:
                return taken
            self._pos = stop + 2
            self._complete(RespValue("$", bytes(buf[start : start + min(length, self._room())]), length), done)
            taken = True
        return taken

    def _frame_string(self, kind: str, line: bytes, end: int, done: list[RespMessage]) -> None:
        # A CR inside a line means its real end was lost: RESP lines hold none.
        if b"\r" in line or (kind == "(" and not _BIG_NUMBER.fullmatch(line)):
            raise Malformed
        self._pos = end
        self._complete(RespValue(kind, line[: self._room()], len(line)), done)

    def _frame_integer(self, kind: str, line: bytes, end: int, done: list[RespMessage]) -> None:
        if not _INTEGER.fullmatch(line):
            raise Malformed
        self._pos = end
        self._complete(RespValue(kind, int(line)), done)

    def _frame_double(self, kind: str, line: bytes, end: int, done: list[RespMessage]) -> None:
        if not _DOUBLE.fullmatch(line):
            raise Malformed
        self._pos = end
        self._complete(RespValue(kind, line), done)

    def _frame_boolean(self, kind: str, line: bytes, end: int, done: list[RespMessage]) -> None:
        if line not in (b"t", b"f"):
            raise Malformed
        self._pos = end
        self._complete(RespValue(kind, line == b"t"), done)

    def _frame_null(self, kind: str, line: bytes, end: int, done: list[RespMessage]) -> None:
        if line:
            raise Malformed
        self._pos = end
        self._complete(RespValue("_", None), done)

    def _frame_bulk(self, kind: str, line: bytes, end: int, done: list[RespMessage]) -> None:
        length = _length(line, null_allowed=kind == "$" and not self.is_request)
        self._pos = end
        if length is None:
            self._complete(RespValue("_", None), done)
            return
        buf, pos = self._buf, end
        if len(buf) - pos < length + 2:
            self._open_bulk(kind, length)
            return
        if buf[pos + length] != CR or buf[pos + length + 1] != LF:
            raise Malformed
        self._pos = pos + length + 2
        self._complete(RespValue(kind, bytes(buf[pos : pos + min(length, self._room())]), length), done)

    def _frame_aggregate(self, kind: str, line: bytes, end: int, done: list[RespMessage]) -> None:
        count = _length(line, null_allowed=kind == "*")
        self._pos = end
        if self.is_request and not count:  # Redis ignores *0 and *-1
            self._begin_message()
            return
        if count is None:
            self._complete(RespValue("_", None), done)
            return
        if len(self._stack) >= MAX_DEPTH:
            raise Malformed
        elements = 2 * count if kind in "%|" else count
        value = RespValue(kind, [], elements)
        if not elements:
            self._complete(value, done)
            return
        kept = kind != "|" and (not self._stack or self._attach(value))
        self._stack.append(_Open(value, elements, kept))

    def _open_bulk(self, kind: str, length: int) -> None:
        self._bulk = RespValue(kind, b"", length)
        self._bulk_kept = bytearray()
        self._keep_room = min(length, self._room())
        self._remaining = length + 2  # with its CRLF
        self._goto(RespParser._step_bulk)

    def _step_bulk(self, done: list[RespMessage]) -> bool:
        buf, pos, remaining = self._buf, self._pos, self._remaining
        taken = min(len(buf) - pos, remaining)
        keep = min(taken, self._keep_room - len(self._bulk_kept))
        if keep > 0:
            self._bulk_kept += buf[pos : pos + keep]
        # The bytes of the CRLF among those taken: offsets from remaining - 2 on.
        crlf_from = max(0, remaining - 2)
        if taken > crlf_from:
            crlf = b"\r\n"[crlf_from - (remaining - 2) : taken - (remaining - 2)]
            if buf[pos + crlf_from : pos + taken] != crlf:
                self._pos = pos + crlf_from
                raise Malformed
        self._pos = pos + taken
        self._remaining = remaining - taken
        if self._remaining:
            return False
        self._finish_bulk(done)
        return True

    def _skip_bulk(self, lost_bytes: int, timestamp_ns: int, done: list[RespMessage]) -> int:
        """Count up to lost_bytes missing bytes of the bulk string in progress
        (its CRLF included); return how many belonged to it."""
        skipped = min(lost_bytes, self._remaining)
        self._skip_input(skipped, timestamp_ns)
        self._remaining -= skipped
        self._keep_room = len(self._bulk_kept)  # what follows a hole would read as contiguous
        if not self._remaining:
            self._finish_bulk(done)
        return skipped

    def _finish_bulk(self, done: list[RespMessage]) -> None:
        self._bulk.value = bytes(self._bulk_kept)
        self._goto(RespParser._step_frame)
        self._complete(self._bulk, done)

    def _inline_command(self, done: list[RespMessage]) -> bool:
        buf, pos = self._buf, self._pos
        if not (buf[pos : pos + 1].isalpha() or buf[pos] in b" \t\r\n\"'"):
            raise Malformed
        end = self._line_end(LINE_LIMIT)
        if end < 0:
            return False
        args = _split_inline(bytes(buf[pos:end]).rstrip(b"\r\n"))
        if args and not self._trusted and args[0].upper() not in COMMANDS:
            raise Malformed
        self._pos = end
        if not args:  # Redis ignores an empty line
            self._begin_message()
            return True
        command = RespValue("*", [], len(args))
        self._stack.append(_Open(command, len(args), kept=True))
        for arg in args:
            self._complete(RespValue("$", arg[: self._room()], len(arg)), done)
        return True

    def _step_resync(self, done: list[RespMessage]) -> bool:
        buf = self._buf
        while True:
            pos = self._pos
            if self._line_start:
                plausible = self._plausible_start(pos)
                if plausible is None:
                    return False
                if plausible:
                    self._begin_message(candidate=True)
                    self._goto(RespParser._step_frame)
                    return True
                self._line_start = False
            lf = buf.find(b"\n", pos)
            if lf < 0:
                self._pos = len(buf)
                return False
            self._pos = lf + 1
            self._line_start = True

    def _plausible_start(self, pos: int) -> bool | None:
        """Whether a message may begin at _buf[pos]; None if too few bytes to tell."""
        buf = self._buf
        if pos >= len(buf):
            return None
        if self.is_request:
            pattern, lines = _REQUEST_START, 2
            if buf[pos] != 0x2A:
                return False
        else:
            pattern, lines = _REPLY_START, 1
            if buf[pos] not in _FRAMES:
                return False
        if pattern.match(buf, pos, pos + _START_WINDOW):
            return True
        decided = len(buf) - pos >= _START_WINDOW or buf.count(b"\n", pos, pos + _START_WINDOW) >= lines
        return False if decided else None

    # The fast path: most syscalls carry whole messages (a command, a
    # pipeline of them, their replies). Taking them straight from the
    # syscall's bytes spares each its steps, its trip through the buffer and
    # its timestamp lookups.

    def _at_boundary(self) -> bool:
        """Whether the next byte of the stream begins a message, with nothing
        buffered. (While resynchronising the step is another, and a message
        found by resynchronising has begun by the time the steps stop.)"""
        return self._step is RespParser._step_frame and self._start_ns is None and self._pos == len(self._buf)

    def _take_whole_messages(self, data: bytes, timestamp_ns: int, done: list[RespMessage]) -> int:
        """Deliver the messages that begin data, fed at a message boundary,
        while each is whole and of a usual shape (see _whole_command and
        _whole_reply); return how many bytes they took. All came with this
        syscall, so they share its timestamp.

        Every RESP frame ends with a CRLF, so data is split at each CRLF once
        and messages are read as whole lines. A string holding a CRLF splits
        into lines that do not match its length: that message and what
        follows it (a partial message, another shape, malformed bytes) are
        left to the step loop, which judges them."""
        lines = data.split(b"\r\n")
        last = len(lines) - 1  # lines[last] has no CRLF after it: b"" or a partial line
        whole, value_limit, i = self._whole_message, self.value_limit, 0
        while i < last:
            found = whole(lines, i, last, value_limit)
            if found is None:
                break
            value, i = found
            done.append(RespMessage(value, timestamp_ns, timestamp_ns))
        if not i:
            return 0
        self._trusted = True  # as after any message: the position is known
        return len(data) - len(lines[last]) if i == last else sum(map(len, lines[:i])) + 2 * i


def _string_room(value_limit: int, kept_values: int, kept_bytes: int) -> int:
    """Bytes the next string value of a message may keep, after the values
    and string bytes it has kept (MAX_KEPT_VALUES, MESSAGE_KEEP_FACTOR)."""
    if kept_values >= MAX_KEPT_VALUES:
        return 0
    return max(0, min(value_limit, MESSAGE_KEEP_FACTOR * value_limit - kept_bytes))


# The fast path's readers of one message. Each reads the message that begins
# at lines[i], lines[:last] being a chunk's lines that a CRLF ended, and
# returns its value as the steps would make it with the index of the line
# after it; or None when the message is partial, of another shape or
# malformed, for the step loop to judge.

WholeMessage = tuple[RespValue, int] | None
_LINE_KINDS = {b"+": "+", b"-": "-"}  # simple strings and errors


def _whole_reply(lines: list[bytes], i: int, last: int, value_limit: int) -> WholeMessage:
    """A simple string or error, an integer, a bulk string or null, or an
    array of bulk strings (MGET, LRANGE, ...)."""
    line = lines[i]
    type_byte = line[:1]
    kind = _LINE_KINDS.get(type_byte)
    if kind is not None:
        # The steps end a line at its first LF, within LINE_LIMIT, and find no CR in it.
        if LF in line or CR in line or len(line) + 1 >= LINE_LIMIT:
            return None
        return RespValue(kind, line[1 : 1 + value_limit], len(line) - 1), i + 1
    if type_byte == b":":
        return (RespValue(":", int(line[1:])), i + 1) if _INTEGER.fullmatch(line, 1) else None
    if type_byte == b"*":
        return _whole_command(lines, i, last, value_limit)
    if type_byte != b"$":
        return None
    if line == b"$-1":
        return RespValue("_", None), i + 1
    if i + 1 == last:
        return None
    string = lines[i + 1]
    if line != b"$%d" % len(string):  # the length as the steps take it, and no CRLF in the string
        return None
    return RespValue("$", string[:value_limit], len(string)), i + 2


def _whole_command(lines: list[bytes], i: int, last: int, value_limit: int) -> WholeMessage:
    """A non-empty array of bulk strings, none of which holds a CRLF: a
    command, or a reply of that shape."""
    header = _ARRAY_LINE.fullmatch(lines[i])
    if header is None:
        return None
    count = int(header.group(1))
    stop = i + 1 + 2 * count  # the line after the array's
    if stop > last:
        return None
    strings = lines[i + 2 : stop : 2]
    if lines[i + 1 : stop : 2] != [b"$%d" % len(string) for string in strings]:
        return None
    if count <= MAX_KEPT_VALUES and sum(map(len, strings)) <= value_limit:  # nothing to cut: the usual case
        items = [RespValue("$", string, len(string)) for string in strings]
    else:
        items = _kept_strings(strings, value_limit)
    return RespValue("*", items, count), stop


def _kept_strings(strings: list[bytes], value_limit: int) -> list[RespValue]:
    """The elements of an array of whole strings, cut as _room and _attach cut them."""
    items: list[RespValue] = []
    kept_bytes = 0
    for string in strings[:MAX_KEPT_VALUES]:
        kept = string[: _string_room(value_limit, len(items), kept_bytes)]
        kept_bytes += len(kept)
        items.append(RespValue("$", kept, len(string)))
    return items


# Type byte -> (how its frame is parsed, longest line it may have).
_FRAMES: dict[int, tuple[Callable, int]] = {
    ord("+"): (RespParser._frame_string, LINE_LIMIT),
    ord("-"): (RespParser._frame_string, LINE_LIMIT),
    ord("("): (RespParser._frame_string, LINE_LIMIT),
    ord(":"): (RespParser._frame_integer, NUMBER_LINE_LIMIT),
    ord(","): (RespParser._frame_double, 2 * NUMBER_LINE_LIMIT),
    ord("#"): (RespParser._frame_boolean, NUMBER_LINE_LIMIT),
    ord("_"): (RespParser._frame_null, NUMBER_LINE_LIMIT),
    **{ord(t): (RespParser._frame_bulk, NUMBER_LINE_LIMIT) for t in "$!="},
    **{ord(t): (RespParser._frame_aggregate, NUMBER_LINE_LIMIT) for t in "*%~|>"},
}


def _length(line: bytes, null_allowed: bool) -> int | None:
    """A bulk string's length or an aggregate's count; None for -1 (null)."""
    if null_allowed and line == b"-1":
        return None
    if not _LENGTH.fullmatch(line) or int(line) > MAX_LENGTH:
        raise Malformed
    return int(line)


def _split_inline(line: bytes) -> list[bytes]:
    if _CONTROL.search(line):
        raise Malformed
    args, pos, end = [], 0, len(line.rstrip(b" \t"))
    while pos < end:
        found = _INLINE_ARG.match(line, pos, end)
        if not found:  # unbalanced quotes, or a quote glued to what follows
            raise Malformed
        double, single, plain = found.groups()
        if double is not None:
            args.append(_ESCAPE.sub(_unescape, double))
        elif single is not None:
            args.append(single.replace(b"\\'", b"'"))
        else:
            args.append(plain)
        pos = found.end()
    if args and not _COMMAND_WORD.fullmatch(args[0]):
        raise Malformed
    return args


def _unescape(escape: re.Match) -> bytes:
    code = escape.group(1)
    if code[:1] == b"x":
        return bytes([int(code[1:], 16)])
    return _ESCAPES.get(code, code)


# Commands


@dataclass(slots=True)
class RedisCommand:
    name: str  # upper-cased; "CLIENT SETNAME" for a container command's subcommand
    args: list[str]  # the kept arguments after the name, as text (see _string_text); passwords hidden
    arg_count: int  # all arguments after the name, kept or not
    start_ns: int
    end_ns: int

    def args_json(self) -> str:
        """The arguments as a JSON array of strings; arguments not kept are
        noted in a last element."""
        shown = self.args
        if self.arg_count > len(shown):
            shown = shown + [f"…({self.arg_count - len(shown)} more)"]
        return f"[{','.join(map(_json, shown))}]"


def command_of(msg: RespMessage) -> RedisCommand:
    """A parsed request as a command."""
    words = msg.value.value
    name = _text(words[0].value).upper()[:NAME_LIMIT]
    rest, count = words[1:], msg.value.size - 1
    if name in CONTAINER_COMMANDS and rest and _COMMAND_WORD.fullmatch(rest[0].value):
        name = f"{name} {_text(rest[0].value).upper()}"
        rest, count = rest[1:], count - 1
    args = _redact(name, [_string_text(arg) for arg in rest])
    return RedisCommand(name, args, count, msg.start_ns, msg.end_ns)


def _redact(name: str, args: list[str]) -> list[str]:
    """Passwords are not telemetry: hide those of AUTH, HELLO ... AUTH,
    MIGRATE ... AUTH/AUTH2, ACL SETUSER rules and CONFIG SET requirepass."""
    if name not in _PASSWORD_COMMANDS:
        return args
    if name == "AUTH":
        return [_REDACTED] * len(args)
    upper = [arg.upper() for arg in args]
    hidden: set[int] = set()
    if name in ("HELLO", "MIGRATE"):
        for i, word in enumerate(upper):
            if word == "AUTH":
                hidden.add(i + (2 if name == "HELLO" else 1))
            elif word == "AUTH2":
                hidden.add(i + 2)
    elif name == "ACL SETUSER":
        hidden = {i for i, arg in enumerate(args) if i and arg[:1] in (">", "<", "#", "!")}
    elif name == "CONFIG SET":
        hidden = {i + 1 for i in range(0, len(args), 2) if upper[i] in _PASSWORD_SETTINGS}
    return [_REDACTED if i in hidden else arg for i, arg in enumerate(args)]


# Replies as text


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


def _string_text(value: RespValue) -> str:
    """A string value as text: bytes that are not UTF-8 as \\xNN, a verbatim
    string without its format prefix, a cut one with its full size noted."""
    raw = value.value
    if value.kind == "=" and raw[3:4] == b":":
        raw = raw[4:]
    text = _text(raw)
    if value.size > len(value.value):
        text += f"…({value.size} bytes)"
    return text


def render_reply(value: RespValue) -> str:
    """A reply as the resp column shows it: scalars in redis-cli's words
    (OK, (integer) 3, (nil), "value"), errors as their text, aggregates as
    JSON-ish text (see _element)."""
    kind = value.kind
    if kind in "+-!":
        return _string_text(value)
    if kind == ":":
        return f"(integer) {value.value}"
    if kind == "_":
        return "(nil)"
    if kind == "#":
        return "(true)" if value.value else "(false)"
    if kind == ",":
        return f"(double) {value.value.decode()}"
    if kind == "(":
        return f"(big number) {_string_text(value)}"
    return _element(value)


def _element(value: RespValue) -> str:
    """A value as JSON: strings quoted, errors as "(error) text", numbers
    bare (inf and nan quoted), null, true/false, maps as objects (a key that
    is not a string quoted), sets and pushes as arrays. Elements not kept
    end an aggregate as …(N more), which leaves JSON."""
    kind = value.kind
    if kind in "$+=":
        return _json(_string_text(value))
    if kind in "-!":
        return _json("(error) " + _string_text(value))
    if kind == ":":
        return str(value.value)
    if kind in ",(":
        text = _string_text(value)
        return text if _JSON_NUMBER.fullmatch(text) else _json(text)
    if kind == "_":
        return "null"
    if kind == "#":
        return "true" if value.value else "false"
    items = [_element(item) for item in value.value]
    if kind == "%":
        items = [f"{_key(items[i])}:{items[i + 1]}" for i in range(0, len(items) - 1, 2)]
    if value.size > len(value.value):
        items.append(f"…({value.size - len(value.value)} more)")
    return ("{%s}" if kind == "%" else "[%s]") % ",".join(items)


def _key(element: str) -> str:
    return element if element.startswith('"') else _json(element)


# Pairing


def _pubsub_kind(value: RespValue) -> bytes | None:
    """The first element of an array or push when it is a string: what a
    pub/sub message or confirmation says it is."""
    if value.kind in "*>" and value.value and value.value[0].kind in "$+":
        return value.value[0].value
    return None


@dataclass(slots=True)
class _Waiting:
    """A command waiting for its reply, or for its pub/sub confirmations: one
    per channel named, or for an UNSUBSCRIBE of all channels as many as come."""

    command: RedisCommand
    confirmation_kind: bytes | None = None
    confirmations_left: int = 0
    confirmations: list[str] = field(default_factory=list)
    end_ns: int = 0


class RedisStitcher:
    """Pairs the commands and replies of one connection into rows, in order.

    - A reply that began before the oldest waiting command cannot answer it
      (one monotonic clock; a read is stamped when it returns): its command
      was lost, so it is counted as unmatched and the command keeps waiting.
    - Out-of-band replies answer no command and become rows of their own with
      req_cmd "" and latency 0: RESP3 pushes other than the confirmations of a
      waiting (P|S)(UN)SUBSCRIBE; in RESP2, arrays shaped as pub/sub messages
      or confirmations while subscribed or while no command waits; the MONITOR
      feed. So they never shift the pairing of later commands.
    - A (P|S)(UN)SUBSCRIBE takes its confirmations (RESP2 arrays or RESP3
      pushes) into one row; resp lists them when there are several.
    - Commands the server does not answer (CLIENT REPLY OFF or SKIP) become
      rows at once with resp "" and latency 0.
    - When the reply parser lost framing (a gap or malformed bytes), the
      commands that began before the loss are given up: their replies may
      have been lost, and pairing a wrong reply is worse than a missing row.
    - A command lost on the request side is noticed by time alone: its reply
      began before the next command, so it is unmatched. With pipelining
      across the loss, later rows may pair wrongly until no command waits
      (a reply with none waiting is dropped, which puts pairing back in step).
    - Past MAX_PENDING waiting commands the oldest are given up and as many
      later replies skipped, which keeps pairing in step.
    """

    def __init__(self, max_pending: int = MAX_PENDING) -> None:
        self.max_pending = max_pending
        self.unmatched_replies = 0
        self.dropped_commands = 0
        self._waiting: deque[_Waiting] = deque()
        self._skip_replies = 0  # replies of commands dropped past max_pending
        self._resp3 = False
        self._subscribed = False  # RESP2 pub/sub mode
        self._monitoring = False
        self._reply_mode = "on"  # CLIENT REPLY: on, off, or skip (the next command)

    @property
    def waiting_commands(self) -> int:
        return len(self._waiting)

    def add_command(self, command: RedisCommand) -> list[dict]:
        if not self._answered(command):
            return [_row(command, "", command.start_ns)]
        kind = _CONFIRMATION_KINDS.get(command.name)
        if kind is not None and not command.arg_count and kind not in _UNSUBSCRIBE_KINDS:
            kind = None  # a SUBSCRIBE without channels gets an error reply
        self._waiting.append(_Waiting(command, kind, command.arg_count))
        if len(self._waiting) > self.max_pending:
            self._waiting.popleft()
            self.dropped_commands += 1
            self._skip_replies += 1
        return []

    def _answered(self, command: RedisCommand) -> bool:
        """Whether the server replies to command, following CLIENT REPLY and RESET."""
        switch = command.args[0].upper() if command.name == "CLIENT REPLY" and command.arg_count == 1 else None
        if switch == "ON" or command.name == "RESET":
            self._reply_mode = "on"
            return True
        silent = self._reply_mode != "on"
        if self._reply_mode == "skip":  # that was the command to skip
            self._reply_mode = "on"
        if switch == "OFF":
            self._reply_mode = "off"
        elif switch == "SKIP" and self._reply_mode != "off":
            self._reply_mode = "skip"
        return not silent and switch not in ("OFF", "SKIP")

    def add_reply(self, msg: RespMessage) -> list[dict]:
        rows: list[dict] = []
        if msg.lost_before_ns is not None:
            self._give_up_before(msg.lost_before_ns, rows)
        value, kind = msg.value, _pubsub_kind(msg.value)
        front = self._waiting[0] if self._waiting else None
        if front is not None and front.confirmation_kind is not None:
            if kind == front.confirmation_kind and front.command.start_ns <= msg.start_ns:
                self._confirm(front, msg, rows)
                return rows
            if front.confirmations:  # they have ended
                self._finish_front(rows)
                front = self._waiting[0] if self._waiting else None
        if self._out_of_band(value, kind, front):
            self._note_confirmation(value, kind)
            rows.append(_out_of_band_row(msg))
        elif self._skip_replies:
            self._skip_replies -= 1
        elif front is None or front.command.start_ns > msg.start_ns:
            self.unmatched_replies += 1
        else:
            self._waiting.popleft()
            self._note_effects(front.command, value)
            rows.append(_row(front.command, render_reply(value), msg.end_ns))
        return rows

    def close(self) -> list[dict]:
        """The connection closed: a command whose confirmations were coming is done."""
        rows: list[dict] = []
        if self._waiting and self._waiting[0].confirmations:
            self._finish_front(rows)
        return rows

    def _give_up_before(self, lost_ns: int, rows: list[dict]) -> None:
        self._skip_replies = 0
        while self._waiting and self._waiting[0].command.start_ns < lost_ns:
            if self._waiting[0].confirmations:
                self._finish_front(rows)
            else:
                self._waiting.popleft()
                self.dropped_commands += 1

    def _confirm(self, front: _Waiting, msg: RespMessage, rows: list[dict]) -> None:
        front.confirmations.append(render_reply(msg.value))
        front.end_ns = msg.end_ns
        channel, count = self._note_confirmation(msg.value, front.confirmation_kind)
        if front.confirmations_left:
            front.confirmations_left -= 1
            done = not front.confirmations_left
        else:  # unsubscribing from all: Redis says nil when there was nothing to leave
            done = channel is None or count == 0
        if done:
            self._finish_front(rows)

    def _note_confirmation(self, value: RespValue, kind: bytes | None) -> tuple[bytes | None, int | None]:
        """The channel and subscription count of a confirmation; the count
        says whether the connection is still in RESP2 pub/sub mode."""
        items = value.value
        if kind not in _CONFIRMATION_REPLY_KINDS or len(items) != 3 or items[2].kind != ":":
            return None, None
        self._subscribed = items[2].value > 0
        return items[1].value, items[2].value

    def _finish_front(self, rows: list[dict]) -> None:
        front = self._waiting.popleft()
        confirmations = front.confirmations
        resp = confirmations[0] if len(confirmations) == 1 else f"[{','.join(confirmations)}]"
        rows.append(_row(front.command, resp, front.end_ns))

    def _out_of_band(self, value: RespValue, kind: bytes | None, front: _Waiting | None) -> bool:
        if value.kind == ">":
            return True
        if front is None and self._monitoring and value.kind == "+":
            return True
        if self._resp3 or value.kind != "*" or not (self._subscribed or front is None):
            return False
        if kind in _CONFIRMATION_REPLY_KINDS:
            return len(value.value) == 3
        return _MESSAGE_SIZES.get(kind) == len(value.value)

    def _note_effects(self, command: RedisCommand, reply: RespValue) -> None:
        """Connection state that a command's answer changes."""
        if reply.kind in "-!":
            return
        if command.name == "HELLO" and command.args[:1] in (["2"], ["3"]):
            self._resp3 = command.args[0] == "3"
        elif command.name == "RESET":
            self._resp3 = self._subscribed = self._monitoring = False
        elif command.name == "MONITOR":
            self._monitoring = True


def _row(command: RedisCommand, resp: str, end_ns: int) -> dict:
    return {
        "time_ns": command.start_ns,
        "req_cmd": command.name,
        "req_args": command.args_json(),
        "resp": resp,
        "latency": end_ns - command.start_ns,
    }


def _out_of_band_row(msg: RespMessage) -> dict:
    return {"time_ns": msg.start_ns, "req_cmd": "", "req_args": "[]", "resp": render_reply(msg.value), "latency": 0}


class RedisTrace(PairedTrace):
    """One connection's two streams in, redis_events rows out."""

    table = "redis_events"

    def __init__(self, value_limit: int = 1024):
        super().__init__(
            RespParser(is_request=True, value_limit=value_limit), RespParser(is_request=False, value_limit=value_limit)
        )
        self.stitcher = RedisStitcher()

    @property
    def replies(self) -> RespParser:
        """The response side's parser, in Redis's word."""
        return self.responses

    @property
    def parse_errors(self) -> int:
        return self.requests.parse_errors + self.responses.parse_errors + self.stitcher.unmatched_replies

    def on_close(self, time_ns: int) -> None:
        self._rows += self.stitcher.close()

    def _add(self, request_side: bool, messages: list[RespMessage]) -> None:
        for msg in messages:
            if request_side:
                self._rows += self.stitcher.add_command(command_of(msg))
            else:
                self._rows += self.stitcher.add_reply(msg)
