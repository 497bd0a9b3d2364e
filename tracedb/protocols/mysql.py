"""MySQL: the bytes of one connection to commands paired with their responses.

This module owns MySQL's classic client/server protocol (packets of a 3-byte
length, a sequence id and a payload; the handshake; commands and the
responses that answer them) on a plain connection, for traced traffic that
may begin mid-conversation or lose bytes:

- `PacketReader` frames one direction into packets, joining the fragments of
  a payload of 16 MiB or more. Lost bytes inside a packet of known length
  keep the framing: the packet arrives marked damaged. Lost bytes anywhere
  else lose it, and the reader waits for the conversation's next turn: the
  protocol is half duplex, so once the other side has spoken, this side's
  next byte begins a packet. The first packet after that must carry the
  sequence id a turn begins with (0 for a command, 1 for a response), or the
  reader waits for the turn after.
- `MysqlSession` follows the conversation: the handshake, parsed through for
  the capability flags and giving no rows (an SSL request ends parsing: TLS
  follows), then one command at a time and the response that answers it.
  Prepared statements are remembered so that executions show their text
  with the parameters in place of the `?`.
- `MysqlTrace` is the socket tracer's view of one connection: bytes of both
  directions in, mysql_events rows out.

A connection traced from its middle shows no handshake. CLIENT_DEPRECATE_EOF
is then learnt from the first result set (the EOF after column definitions
is 5 bytes long, the OK that replaces it at least 7), and query attributes
(CLIENT_QUERY_ATTRIBUTES) are recognised by their layout.

Commands without a response (Quit, StmtClose) give a row with resp_status
NONE and latency 0. StmtSendLongData gives no row: its data shows in the
execution as <long data>. Other commands (StmtFetch, replication, ...) give
no row and their responses are passed over.

Memory is bounded: a packet keeps its first PACKET_KEEP payload bytes, a
session remembers MAX_STATEMENTS prepared statements by the first body_limit
characters of their text, and a response keeps the rows that fit in
body_limit characters.
"""

from __future__ import annotations

import re
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from tracedb.protocols.base import PairedTrace

PACKET_KEEP = 64 * 1024  # payload bytes kept per packet; the rest is counted
MAX_STATEMENTS = 1024  # prepared statements remembered per connection
MAX_FRAGMENT = 0xFFFFFF  # a fragment this long continues in the next one

CLIENT_COMPRESS = 0x20
CLIENT_PROTOCOL_41 = 0x200
CLIENT_SSL = 0x800
CLIENT_DEPRECATE_EOF = 1 << 24
CLIENT_OPTIONAL_RESULTSET_METADATA = 1 << 25
CLIENT_QUERY_ATTRIBUTES = 1 << 27

SERVER_MORE_RESULTS_EXISTS = 0x0008
SERVER_STATUS_CURSOR_EXISTS = 0x0040

COM_QUIT, COM_INIT_DB, COM_QUERY, COM_FIELD_LIST, COM_STATISTICS, COM_PING = 0x01, 0x02, 0x03, 0x04, 0x09, 0x0E
COM_CHANGE_USER, COM_STMT_PREPARE, COM_STMT_EXECUTE, COM_STMT_SEND_LONG_DATA = 0x11, 0x16, 0x17, 0x18
COM_STMT_CLOSE, COM_STMT_RESET, COM_SET_OPTION, COM_RESET_CONNECTION = 0x19, 0x1A, 0x1B, 0x1F

COMMAND_NAMES = {
    COM_QUIT: "Quit", COM_INIT_DB: "InitDB", COM_QUERY: "Query", COM_FIELD_LIST: "FieldList",
    COM_STATISTICS: "Statistics", COM_PING: "Ping", COM_CHANGE_USER: "ChangeUser",
    COM_STMT_PREPARE: "StmtPrepare", COM_STMT_EXECUTE: "StmtExecute", COM_STMT_SEND_LONG_DATA: "StmtSendLongData",
    COM_STMT_CLOSE: "StmtClose", COM_STMT_RESET: "StmtReset", COM_SET_OPTION: "SetOption",
    COM_RESET_CONNECTION: "ResetConnection",
}
SET_OPTIONS = {0: "MULTI_STATEMENTS_ON", 1: "MULTI_STATEMENTS_OFF"}

STATUS_OK, STATUS_ERR, STATUS_RESULTSET, STATUS_NONE = "OK", "ERR", "RESULTSET", "NONE"

# Column and parameter types of the binary protocol
TYPE_FLOAT, TYPE_DOUBLE, TYPE_NULL, TYPE_TIMESTAMP = 0x04, 0x05, 0x06, 0x07
TYPE_DATE, TYPE_TIME, TYPE_DATETIME = 0x0A, 0x0B, 0x0C
_INT_SIZES = {0x01: 1, 0x02: 2, 0x03: 4, 0x08: 8, 0x09: 4, 0x0D: 2}  # TINY SHORT LONG LONGLONG INT24 YEAR
_DECIMAL_TYPES = frozenset((0x00, 0xF6))
_STRING_TYPES = frozenset((0x0F, 0x10, *range(0xF5, 0x100)))  # VARCHAR BIT JSON ENUM SET blobs strings GEOMETRY
UNSIGNED_COLUMN = 0x20  # column definition flag
UNSIGNED_PARAMETER = 0x80  # flag byte after a parameter's type
PARAMETER_COUNT_AVAILABLE = 0x08  # COM_STMT_EXECUTE flag

_START, _HANDSHAKE, _COMMANDS = "start", "handshake", "commands"


class _Malformed(Exception):
    """The bytes cannot be what the protocol says comes next."""


class _Desync(Exception):
    """A packet's sequence id says the framing of its direction is off."""


class _Fields:
    """The little-endian fields of one payload, read in order."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    @property
    def left(self) -> int:
        return len(self.data) - self.pos

    def take(self, size: int) -> bytes:
        end = self.pos + size
        if end > len(self.data):
            raise _Malformed
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "little")

    def byte(self) -> int:
        try:
            value = self.data[self.pos]
        except IndexError:
            raise _Malformed from None
        self.pos += 1
        return value

    def lenenc(self) -> int | None:
        """A length-encoded integer; None for the NULL marker of a row."""
        first = self.byte()
        if first < 0xFB:
            return first
        if first == 0xFB:
            return None
        if first == 0xFF:
            raise _Malformed
        return self.uint({0xFC: 2, 0xFD: 3, 0xFE: 8}[first])

    def count(self) -> int:
        value = self.lenenc()
        if value is None:
            raise _Malformed
        return value

    def lenenc_bytes(self) -> bytes | None:
        length = self.lenenc()
        return None if length is None else self.take(length)

    def cstring(self) -> bytes:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise _Malformed
        value = self.data[self.pos : end]
        self.pos = end + 1
        return value

    def rest(self) -> bytes:
        value = self.data[self.pos :]
        self.pos = len(self.data)
        return value


# Framing


@dataclass
class MysqlPacket:
    seq: int  # sequence id of its first fragment
    last_seq: int  # ... and of its last (a payload of 16 MiB or more takes several)
    payload: bytes  # its first PACKET_KEEP bytes
    size: int  # payload bytes in all
    start_ns: int  # timestamp of the chunk holding its first byte
    end_ns: int  # ... and its last
    damaged: bool = False  # bytes inside it were lost

    @property
    def cut(self) -> bool:
        """Only the start of the payload is here."""
        return self.size > len(self.payload)


class PacketReader:
    """Frames one direction of a connection into packets."""

    def __init__(self, restart_seq: int) -> None:
        self.restart_seq = restart_seq  # sequence id that begins this side's turn
        self.parse_errors = 0
        self.skipped_bytes = 0  # lost inside packets of known length
        self.framing_lost = False
        self._after_restart = False  # the next packet must begin a turn
        self._header = bytearray()
        self._in_payload = False
        self._remaining = 0  # payload bytes of the current fragment still to come
        self._fragment_size = 0
        self._begin_packet()

    def feed(self, data: bytes, timestamp_ns: int) -> list[MysqlPacket]:
        """The packets the next bytes of the stream complete. While the
        framing is lost, bytes are passed over."""
        done: list[MysqlPacket] = []
        pos, end = 0, len(data)
        while pos < end and not self.framing_lost:
            if self._in_payload:
                pos = self._take_payload(data, pos, timestamp_ns, done)
                continue
            if self._seq is None and not self._header:
                self._start_ns = timestamp_ns
            if not self._header and end - pos >= 4:  # the common case: a whole header here
                header = data[pos : pos + 4]
                pos += 4
            else:
                piece = data[pos : pos + 4 - len(self._header)]
                self._header += piece
                pos += len(piece)
                if len(self._header) < 4:
                    continue
                header = bytes(self._header)
                self._header.clear()
            self._start_fragment(header, timestamp_ns, done)
        return done

    def gap(self, lost_bytes: int, timestamp_ns: int = 0) -> list[MysqlPacket]:
        """lost_bytes are missing here. Inside a packet they are counted and
        the packet is returned damaged when its end has passed; past its end
        (or between packets) the framing is lost."""
        done: list[MysqlPacket] = []
        if self.framing_lost:
            return done
        if self._in_payload:
            skipped = min(lost_bytes, self._remaining)
            self._remaining -= skipped
            self._size += skipped
            self.skipped_bytes += skipped
            self._damaged = True
            lost_bytes -= skipped
            if not self._remaining:
                self._end_fragment(timestamp_ns, done)
        if lost_bytes:
            self.parse_errors += 1
            self.lose_framing()
        return done

    def lose_framing(self) -> None:
        self.framing_lost = True
        self._header.clear()
        self._in_payload = False
        self._begin_packet()

    def restart(self) -> None:
        """The other side has spoken: if the framing is lost, this side's next byte begins a packet."""
        if self.framing_lost:
            self.framing_lost = False
            self._after_restart = True

    def _begin_packet(self) -> None:
        self._seq: int | None = None
        self._last_seq = 0
        self._parts: list[bytes] = []  # the kept payload, as it arrived
        self._kept = 0
        self._size = 0
        self._start_ns = 0
        self._damaged = False

    def _take_payload(self, data: bytes, pos: int, timestamp_ns: int, done: list[MysqlPacket]) -> int:
        taken = min(self._remaining, len(data) - pos)
        room = PACKET_KEEP - self._kept
        if room > 0:
            part = data[pos : pos + min(taken, room)]
            self._parts.append(part)
            self._kept += len(part)
        self._size += taken
        self._remaining -= taken
        if not self._remaining:
            self._end_fragment(timestamp_ns, done)
        return pos + taken

    def _start_fragment(self, header: bytes, timestamp_ns: int, done: list[MysqlPacket]) -> None:
        size = header[0] | header[1] << 8 | header[2] << 16
        seq = header[3]
        if self._seq is None:
            if self._after_restart and seq != self.restart_seq:
                self.parse_errors += 1
                self.lose_framing()
                return
            self._after_restart = False
            self._seq = seq
        self._last_seq = seq
        self._fragment_size = self._remaining = size
        self._in_payload = True
        if not size:
            self._end_fragment(timestamp_ns, done)

    def _end_fragment(self, timestamp_ns: int, done: list[MysqlPacket]) -> None:
        self._in_payload = False
        if self._fragment_size == MAX_FRAGMENT:
            return
        payload = self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)
        done.append(
            MysqlPacket(self._seq, self._last_seq, payload, self._size, self._start_ns, timestamp_ns, self._damaged)
        )
        self._begin_packet()


# Generic packets: OK, ERR, EOF, column definitions, values


@dataclass
class _Ok:
    affected_rows: int
    last_insert_id: int
    status: int
    warnings: int
    info: str


def _parse_ok(payload: bytes) -> _Ok:
    """An OK packet (protocol 4.1), or the EOF-replacing OK with header 0xFE.
    The info is length-encoded with or without CLIENT_SESSION_TRACK: MySQL
    and MariaDB servers both send it so, and client libraries read it so;
    session state changes may follow it, and are not shown."""
    fields = _Fields(payload, 1)
    affected_rows, last_insert_id = fields.count(), fields.count()
    status, warnings = fields.uint(2), fields.uint(2)
    info = (fields.lenenc_bytes() or b"") if fields.left else b""
    return _Ok(affected_rows, last_insert_id, status, warnings, _text(info))


def _ok_text(ok: _Ok) -> str:
    text = f"affected_rows={ok.affected_rows} last_insert_id={ok.last_insert_id}"
    if ok.warnings:
        text += f" warnings={ok.warnings}"
    if ok.info:
        text += f' info="{ok.info}"'
    return text


def _err_text(payload: bytes) -> str:
    """An ERR packet as text: 1146 (42S02): Table 'x.y' doesn't exist. Before
    protocol 4.1 there is no SQLSTATE."""
    fields = _Fields(payload, 1)
    code = fields.uint(2)
    if payload[3:4] == b"#":
        fields.take(1)
        state = fields.take(5).decode("ascii", "replace")
        return f"{code} ({state}): {_text(fields.rest())}"
    return f"{code}: {_text(fields.rest())}"


def _is_eof(packet: MysqlPacket) -> bool:
    """An EOF packet (protocol 4.1: header, warnings, status)."""
    return packet.payload[:1] == b"\xfe" and packet.size == 5


def _is_terminator(packet: MysqlPacket) -> bool:
    """The EOF or OK that ends rows or definitions. A text row beginning with
    0xFE (an 8-byte length) is 16 MiB or more, so spans whole fragments."""
    return packet.payload[:1] == b"\xfe" and packet.size < MAX_FRAGMENT


def _head(packet: MysqlPacket) -> int:
    if not packet.payload:
        raise _Malformed
    return packet.payload[0]


@dataclass
class _Column:
    name: str
    type: int
    unsigned: bool


def _parse_column(payload: bytes) -> _Column:
    """A column definition (protocol 4.1)."""
    fields = _Fields(payload)
    if fields.lenenc_bytes() != b"def":  # the catalog is always "def"
        raise _Malformed
    for _ in range(3):  # schema, table, original table
        fields.lenenc_bytes()
    name = fields.lenenc_bytes() or b""
    fields.lenenc_bytes()  # original name
    fields.count()  # length of the fixed-length fields
    fields.take(6)  # character set, column length
    column_type, flags = fields.byte(), fields.uint(2)
    return _Column(_text(name), column_type, bool(flags & UNSIGNED_COLUMN))


class _Temporal(str):
    """A date or time value, shown quoted in SQL."""


class _Number(str):
    """A DECIMAL value as sent, shown bare in SQL."""


Value = None | int | float | bytes | str


def _binary_value(fields: _Fields, value_type: int, unsigned: bool) -> Value:
    """One value of the binary protocol (parameters, rows of executions)."""
    size = _INT_SIZES.get(value_type)
    if size:
        return int.from_bytes(fields.take(size), "little", signed=not unsigned)
    if value_type == TYPE_DOUBLE:
        return struct.unpack("<d", fields.take(8))[0]
    if value_type == TYPE_FLOAT:
        return float(format(struct.unpack("<f", fields.take(4))[0], ".7g"))  # the digits a FLOAT holds
    if value_type in (TYPE_DATE, TYPE_DATETIME, TYPE_TIMESTAMP):
        return _Temporal(_datetime_text(fields, value_type == TYPE_DATE))
    if value_type == TYPE_TIME:
        return _Temporal(_time_text(fields))
    if value_type == TYPE_NULL:
        return None
    if value_type in _DECIMAL_TYPES:
        return _Number(_text(fields.lenenc_bytes() or b""))
    if value_type in _STRING_TYPES:
        return fields.lenenc_bytes() or b""
    raise _Malformed


def _datetime_text(fields: _Fields, date_only: bool) -> str:
    length = fields.byte()
    if length not in (0, 4, 7, 11):
        raise _Malformed
    parts = fields.take(length).ljust(11, b"\0")
    year, month, day, hour, minute, second = int.from_bytes(parts[:2], "little"), *parts[2:7]
    text = f"{year:04d}-{month:02d}-{day:02d}"
    if date_only:
        return text
    return text + f" {hour:02d}:{minute:02d}:{second:02d}" + _fraction(parts[7:11])


def _time_text(fields: _Fields) -> str:
    length = fields.byte()
    if length not in (0, 8, 12):
        raise _Malformed
    parts = fields.take(length).ljust(12, b"\0")
    negative, days, (hour, minute, second) = parts[0], int.from_bytes(parts[1:5], "little"), parts[5:8]
    sign = "-" if negative else ""
    return f"{sign}{days * 24 + hour:02d}:{minute:02d}:{second:02d}" + _fraction(parts[8:12])


def _fraction(raw: bytes) -> str:
    micro = int.from_bytes(raw, "little")
    return f".{micro:06d}" if micro else ""


def _literal(value: Value) -> str:
    """A value as it would be written in SQL."""
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        try:
            return _quote(value.decode("utf-8"))
        except UnicodeDecodeError:
            return f"X'{value.hex()}'"
    if isinstance(value, _Temporal):
        return _quote(value)
    return str(value)


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


_BATCH_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\0": "\\0"})


def _cell(value: Value) -> str:
    """A value as `mysql --batch` prints it: tabs, newlines and backslashes escaped."""
    if value is None:
        return "NULL"
    text = _text(value) if isinstance(value, bytes) else str(value)
    return text.translate(_BATCH_ESCAPES)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


# Statements and their parameters

# Strings, quoted identifiers and comments are matched whole, so that a ?
# inside them is not taken for a placeholder.
_SQL_PLACEHOLDERS = re.compile(
    r"""'(?:[^'\\]|\\.|'')*'?|"(?:[^"\\]|\\.|"")*"?|`(?:[^`]|``)*`?"""
    r"""|--[ \t][^\n]*|\#[^\n]*|/\*.*?(?:\*/|\Z)|\?""",
    re.S,
)


def render_statement(text: str, literals: list[str]) -> str:
    """text with its placeholders replaced in order by literals; placeholders
    without a literal stay `?`."""
    values = iter(literals)
    return _SQL_PLACEHOLDERS.sub(lambda m: next(values, "?") if m.group() == "?" else m.group(), text)


@dataclass
class _Statement:
    text: str  # the first body_limit + 1 characters: enough to render what is shown
    param_count: int
    param_types: list[tuple[int, bool]] | None = None  # (type, unsigned) as last bound
    long_data: set[int] = field(default_factory=set)  # parameters sent with COM_STMT_SEND_LONG_DATA


def _unknown_statement(statement_id: int) -> str:
    return f"<statement {statement_id}, prepared before tracing began>"


_LONG_DATA = "<long data>"


def _execute_parameters(
    fields: _Fields, statement: _Statement, flags: int, attributes: bool
) -> tuple[list[str] | None, list[tuple[int, bool]] | None]:
    """The literals of an execution's parameters and the types it bound (None
    if it bound none). Query attributes add a count, names and values after
    the parameters; they are read past. The values of an execution that
    reuses types bound before tracing began cannot be read: literals None."""
    count = statement.param_count
    if attributes and (count or flags & PARAMETER_COUNT_AVAILABLE):
        count = fields.count()
    if not count:
        return [], None
    nulls = fields.take((count + 7) // 8)
    bound = None
    if fields.byte():  # new parameters bound: their types follow
        bound = [_parameter_type(fields, attributes) for _ in range(count)]
    types = bound or statement.param_types
    if types is None or len(types) < count:
        return None, None
    literals = []
    for index, (value_type, unsigned) in enumerate(types[:count]):
        if nulls[index // 8] >> index % 8 & 1:
            literals.append("NULL")
        elif index in statement.long_data:
            literals.append(_LONG_DATA)
        else:
            literals.append(_literal(_binary_value(fields, value_type, unsigned)))
    return literals[: statement.param_count], bound and bound[: statement.param_count]


def _parameter_type(fields: _Fields, attributes: bool) -> tuple[int, bool]:
    value_type, flags = fields.byte(), fields.byte()
    if attributes:
        fields.lenenc_bytes()  # the parameter's name: empty but for query attributes
    return value_type, bool(flags & UNSIGNED_PARAMETER)


def _skip_query_attributes(fields: _Fields) -> None:
    """Read past the attributes that precede a COM_QUERY's text."""
    count = fields.count()
    if fields.count() != 1:  # parameter sets: always one
        raise _Malformed
    if not count:
        return
    nulls = fields.take((count + 7) // 8)
    if fields.byte() != 1:  # types are always bound
        raise _Malformed
    types = [_parameter_type(fields, attributes=True) for _ in range(count)]
    for index, (value_type, unsigned) in enumerate(types):
        if not nulls[index // 8] >> index % 8 & 1:
            _binary_value(fields, value_type, unsigned)


# Responses


class _Response:
    """The response to one command, read packet by packet: `add` takes each
    in order and says whether it was the last."""

    def __init__(self, session: MysqlSession) -> None:
        self.session = session
        self.status = STATUS_OK
        self.lines: list[str] = []
        self._room = session.body_limit  # characters left for rows and column names

    def add(self, packet: MysqlPacket) -> bool:
        raise NotImplementedError

    @property
    def body(self) -> str:
        return "\n".join(self.lines)

    def _error(self, packet: MysqlPacket) -> bool:
        self.status = STATUS_ERR
        self.lines.append(_err_text(packet.payload))
        return True

    def _keep_line(self, line: str) -> bool:
        """Keep a line of names or values if it fits; once one does not, no more do."""
        if len(line) + 1 > self._room:
            self._room = 0
            return False
        self._room -= len(line) + 1
        self.lines.append(line)
        return True


class _StatusResponse(_Response):
    """OK, ERR or EOF; an authentication exchange for ChangeUser; a line of text for Statistics."""

    def __init__(self, session: MysqlSession, command: int) -> None:
        super().__init__(session)
        self.command = command

    def add(self, packet: MysqlPacket) -> bool:
        head = _head(packet)
        if head == 0xFF:
            return self._error(packet)
        if self.command == COM_CHANGE_USER and head in (0xFE, 0x01):  # auth switch, more auth data
            return False
        if head == 0x00:
            self.lines.append(_ok_text(_parse_ok(packet.payload)))
            return True
        if _is_terminator(packet):  # SetOption's EOF, or the OK that replaces it
            return True
        if self.command == COM_STATISTICS:
            self.lines.append(_text(packet.payload))
            return True
        raise _Malformed


@dataclass
class _ResultSet:
    first_line: int  # where its lines begin in the response's
    columns: list[_Column] = field(default_factory=list)
    column_count: int = 0
    shown: bool = False  # its column names were kept, so rows may be
    rows: int = 0


class _ResultResponse(_Response):
    """Query and StmtExecute: OK, ERR, or result sets (text rows for a query,
    binary rows for an execution), several when the server says more follow."""

    def __init__(self, session: MysqlSession, binary: bool) -> None:
        super().__init__(session)
        self.binary = binary
        self._set: _ResultSet | None = None
        # Steps are kept unbound so that a response holds no reference cycle.
        self._step: Callable[[_ResultResponse, MysqlPacket], bool] = _ResultResponse._step_first

    def add(self, packet: MysqlPacket) -> bool:
        return self._step(self, packet)

    def _step_first(self, packet: MysqlPacket) -> bool:
        head = _head(packet)
        if head == 0xFF:
            return self._error(packet)
        if head == 0x00:
            ok = _parse_ok(packet.payload)
            self.lines.append(_ok_text(ok))
            return _ends_response(ok.status)
        if head == 0xFB:  # LOAD DATA LOCAL: the client sends the file, then OK or ERR comes
            self.lines.append(f"LOCAL INFILE {_text(packet.payload[1:])}")
            return False
        fields = _Fields(packet.payload)
        self._set = _ResultSet(first_line=len(self.lines), column_count=fields.count())
        metadata_follows = not self.session.flag(CLIENT_OPTIONAL_RESULTSET_METADATA) or fields.byte()
        if not self._set.column_count:
            raise _Malformed
        self._step = _ResultResponse._step_column if metadata_follows else _ResultResponse._step_row
        return False

    def _step_column(self, packet: MysqlPacket) -> bool:
        result = self._set
        result.columns.append(_parse_column(packet.payload))
        if len(result.columns) < result.column_count:
            return False
        result.shown = self._keep_line("\t".join(c.name.translate(_BATCH_ESCAPES) for c in result.columns))
        self._step = _ResultResponse._step_row if self.session.deprecate_eof else _ResultResponse._step_columns_end
        return False

    def _step_columns_end(self, packet: MysqlPacket) -> bool:
        # Without CLIENT_DEPRECATE_EOF an EOF ends the definitions. If the flag
        # is unknown, a packet that is no EOF shows that it is set.
        if _is_eof(packet):
            self.session.deprecate_eof = False
            self._step = _ResultResponse._step_row
            if self.session.terminator_status(packet.payload) & SERVER_STATUS_CURSOR_EXISTS:
                self._finish_set()  # the rows come with COM_STMT_FETCH
                return True
            return False
        if self.session.deprecate_eof is False:
            raise _Malformed
        self.session.deprecate_eof = True
        self._step = _ResultResponse._step_row
        return self._step_row(packet)

    def _step_row(self, packet: MysqlPacket) -> bool:
        if _is_terminator(packet):
            self._finish_set()
            return _ends_response(self.session.terminator_status(packet.payload))
        if _head(packet) == 0xFF:
            self._finish_set()
            return self._error(packet)
        self._set.rows += 1
        if self._set.shown and self._room and not packet.cut:
            self._show_row(packet.payload)
        return False

    def _show_row(self, payload: bytes) -> None:
        columns = self._set.columns
        try:
            values = _binary_row(payload, columns) if self.binary else _text_row(payload, len(columns))
        except _Malformed:  # a type this module cannot read: the rows are still counted
            self._room = 0
            return
        self._keep_line("\t".join(map(_cell, values)))

    def _finish_set(self) -> None:
        rows = self._set.rows
        self.lines.insert(self._set.first_line, f"{rows} row" if rows == 1 else f"{rows} rows")
        self.status = STATUS_RESULTSET
        self._step = _ResultResponse._step_first


def _ends_response(status: int) -> bool:
    """Whether the response ends with the OK or terminator carrying these status flags."""
    return not status & SERVER_MORE_RESULTS_EXISTS


def _text_row(payload: bytes, column_count: int) -> list[Value]:
    fields = _Fields(payload)
    return [fields.lenenc_bytes() for _ in range(column_count)]


def _binary_row(payload: bytes, columns: list[_Column]) -> list[Value]:
    fields = _Fields(payload, 1)
    nulls = fields.take((len(columns) + 9) // 8)  # the bitmap of a row skips its first two bits
    return [
        None if nulls[(i + 2) // 8] >> (i + 2) % 8 & 1 else _binary_value(fields, c.type, c.unsigned)
        for i, c in enumerate(columns)
    ]


class _PrepareResponse(_Response):
    """StmtPrepare: its OK (statement id, counts), then the parameter and the
    column definitions, each block ended by an EOF unless CLIENT_DEPRECATE_EOF.
    When that flag is unknown the response is taken to end with the last
    definition; an EOF after it answers no command and is passed over."""

    def __init__(self, session: MysqlSession, text: str) -> None:
        super().__init__(session)
        self.text = text
        self._blocks: list[int] = []  # sizes of the definition blocks to come
        self._left = 0  # definitions left in the current block
        self._step: Callable[[_PrepareResponse, MysqlPacket], bool] = _PrepareResponse._step_ok

    def add(self, packet: MysqlPacket) -> bool:
        return self._step(self, packet)

    def _step_ok(self, packet: MysqlPacket) -> bool:
        head = _head(packet)
        if head == 0xFF:
            return self._error(packet)
        if head != 0x00:
            raise _Malformed
        fields = _Fields(packet.payload, 1)
        statement_id, columns, params = fields.uint(4), fields.uint(2), fields.uint(2)
        fields.take(1)
        warnings = fields.uint(2) if fields.left >= 2 else 0
        metadata_follows = not (self.session.flag(CLIENT_OPTIONAL_RESULTSET_METADATA) and fields.left) or fields.byte()
        self.session.remember_statement(statement_id, self.text, params)
        line = f"statement_id={statement_id} params={params} columns={columns}"
        self.lines.append(line + f" warnings={warnings}" if warnings else line)
        self._blocks = [n for n in (params, columns) if n] if metadata_follows else []
        return self._next_block()

    def _next_block(self) -> bool:
        if not self._blocks:
            return True
        self._left = self._blocks.pop(0)
        self._step = _PrepareResponse._step_definition
        return False

    def _step_definition(self, packet: MysqlPacket) -> bool:
        _parse_column(packet.payload)
        self._left -= 1
        if self._left:
            return False
        eof_known = self.session.deprecate_eof is False
        if eof_known or (self._blocks and self.session.deprecate_eof is None):
            self._step = _PrepareResponse._step_block_end
            return False
        return self._next_block()

    def _step_block_end(self, packet: MysqlPacket) -> bool:
        if _is_eof(packet):
            self.session.deprecate_eof = False
            return self._next_block()
        if self.session.deprecate_eof is False:
            raise _Malformed
        self.session.deprecate_eof = True
        self._next_block()
        return self._step(self, packet)


class _FieldListResponse(_Response):
    """FieldList: column definitions, then an EOF (or OK)."""

    def __init__(self, session: MysqlSession) -> None:
        super().__init__(session)
        self._names: list[str] = []

    def add(self, packet: MysqlPacket) -> bool:
        if _head(packet) == 0xFF:
            return self._error(packet)
        if not _is_terminator(packet):
            self._names.append(_parse_column(packet.payload).name)
            return False
        self.lines.append(f"{len(self._names)} columns")
        self._keep_line("\t".join(self._names))
        return True


# The conversation


@dataclass
class MysqlEvent:
    """One command and the response that answered it."""

    command: str  # a COMMAND_NAMES value
    request: str
    status: str  # STATUS_OK, STATUS_ERR, STATUS_RESULTSET or STATUS_NONE
    response: str
    start_ns: int  # first byte of the command
    end_ns: int  # last byte of the response (start_ns when there is none)


@dataclass
class _Exchange:
    command: str
    request: str
    start_ns: int
    response: _Response
    next_seq: int  # sequence id the next response packet must carry


class MysqlSession:
    """The state of one connection's conversation, fed its packets in time order."""

    def __init__(self, body_limit: int = 1024) -> None:
        self.body_limit = body_limit
        self.parse_errors = 0
        self.unmatched_responses = 0  # responses with no command traced
        self.dropped_commands = 0  # their command or response cut by lost bytes or the close
        self.unsupported_commands = 0
        self.stopped = ""  # why parsing stopped for good: "tls", "compression", "protocol 3.20"
        self.capabilities: int | None = None  # negotiated in the handshake; None if not seen
        self.deprecate_eof: bool | None = None  # from the capabilities, or learnt from a result set
        self._server_capabilities = ~0
        self._phase = _START
        self._exchange: _Exchange | None = None
        self._ignoring = False  # response packets until the next command answer a dropped one
        self._statements: OrderedDict[int, _Statement] = OrderedDict()

    def flag(self, capability: int) -> bool | None:
        return None if self.capabilities is None else bool(self.capabilities & capability)

    # Packets in

    def on_request(self, packet: MysqlPacket) -> list[MysqlEvent]:
        if self.stopped:
            return []
        if packet.seq:
            self._continue_request(packet)
            return []
        return self._begin_command(packet)

    def on_response(self, packet: MysqlPacket) -> list[MysqlEvent]:
        """Raises _Desync when the packet's sequence id shows its direction's framing is off."""
        if self.stopped:
            return []
        if self._phase == _START:
            self._read_greeting(packet)
            return []
        if self._phase == _HANDSHAKE:
            if packet.payload[:1] in (b"\x00", b"\xff"):  # authenticated, or refused (the server closes)
                self._phase = _COMMANDS
            return []
        exchange = self._exchange
        if exchange is None:
            if packet.seq == 1 and not self._ignoring:
                self.unmatched_responses += 1
                self._ignoring = True
            return []
        if packet.damaged:
            self._drop_exchange()
            return []
        if packet.seq != exchange.next_seq:
            self.parse_errors += 1
            self._drop_exchange()
            raise _Desync
        exchange.next_seq = (packet.last_seq + 1) & 0xFF
        return self._answer(exchange, packet)

    def framing_lost(self) -> None:
        """A direction lost its framing: the exchange in progress cannot be read to its end."""
        self._drop_exchange()
        if self._phase == _HANDSHAKE:
            self._phase = _COMMANDS

    def close(self) -> None:
        self._drop_exchange()

    # The handshake

    def _read_greeting(self, packet: MysqlPacket) -> None:
        if packet.seq or packet.damaged or packet.payload[:1] != b"\x0a":
            return  # not the start of the connection: commands will show the way in
        try:
            self._server_capabilities = _greeting_capabilities(packet.payload)
        except _Malformed:
            self.parse_errors += 1
            return
        self._phase = _HANDSHAKE

    def _continue_request(self, packet: MysqlPacket) -> None:
        """A client packet inside an exchange: the handshake response,
        authentication data, the file of a LOAD DATA LOCAL."""
        if self._phase == _HANDSHAKE:
            if self.capabilities is None and packet.seq == 1 and not packet.damaged:
                self._read_handshake_response(packet.payload)
        elif self._exchange is not None:
            self._exchange.next_seq = (packet.last_seq + 1) & 0xFF
        elif self._phase == _COMMANDS and not self._ignoring:
            self.parse_errors += 1
            raise _Desync

    def _read_handshake_response(self, payload: bytes) -> None:
        try:
            fields = _Fields(payload)
            capabilities = fields.uint(2)
            if not capabilities & CLIENT_PROTOCOL_41:
                self.stopped = "protocol 3.20"
                return
            capabilities |= fields.uint(2) << 16
        except _Malformed:
            self.parse_errors += 1
            return
        # An SSL request is a short handshake response: TLS follows it, then
        # the real response, encrypted. Compression begins after the handshake.
        if capabilities & CLIENT_SSL:
            self.stopped = "tls"
        elif capabilities & CLIENT_COMPRESS:
            self.stopped = "compression"
        self.capabilities = capabilities & self._server_capabilities
        self.deprecate_eof = bool(self.capabilities & CLIENT_DEPRECATE_EOF)

    # Commands

    def _begin_command(self, packet: MysqlPacket) -> list[MysqlEvent]:
        if self._exchange is not None:  # its response never ended
            self._drop_exchange()
        self._phase = _COMMANDS
        self._ignoring = True  # until the command proves readable
        if packet.damaged:
            self.dropped_commands += 1
            return []
        code = packet.payload[0] if packet.payload else None
        reader = _COMMAND_READERS.get(code)
        if reader is None:
            self.unsupported_commands += 1
            return []
        try:
            request, response = reader(self, code, _Fields(packet.payload, 1), packet.cut)
        except _Malformed:
            self.parse_errors += 1
            return []
        self._ignoring = False
        request = _clip(request, self.body_limit)
        if response is not None:
            next_seq = (packet.last_seq + 1) & 0xFF
            self._exchange = _Exchange(COMMAND_NAMES[code], request, packet.start_ns, response, next_seq)
            return []
        if code == COM_STMT_SEND_LONG_DATA:
            return []
        return [MysqlEvent(COMMAND_NAMES[code], request, STATUS_NONE, "", packet.start_ns, packet.start_ns)]

    def _read_query(self, code: int, fields: _Fields, cut: bool) -> tuple[str, _Response]:
        attributes = self.flag(CLIENT_QUERY_ATTRIBUTES)
        if attributes is not False:
            start = fields.pos
            try:
                _skip_query_attributes(fields)
            except _Malformed:
                if attributes:
                    raise
                fields.pos = start  # unknown flag, and no attributes there: plain text
        return _text(fields.rest()), _ResultResponse(self, binary=False)

    def _read_prepare(self, code: int, fields: _Fields, cut: bool) -> tuple[str, _Response]:
        text = _text(fields.rest())
        return text, _PrepareResponse(self, text)

    def _read_execute(self, code: int, fields: _Fields, cut: bool) -> tuple[str, _Response]:
        statement_id, flags = fields.uint(4), fields.byte()
        fields.take(4)  # iteration count
        statement = self._statements.get(statement_id)
        if statement is None:
            return _unknown_statement(statement_id), _ResultResponse(self, binary=True)
        literals = self._execute_literals(fields, statement, flags, cut)
        statement.long_data.clear()
        return render_statement(statement.text, literals), _ResultResponse(self, binary=True)

    def _execute_literals(self, fields: _Fields, statement: _Statement, flags: int, cut: bool) -> list[str]:
        """Read the parameters in the layout the capabilities give; if they are
        unknown, in the first layout that reads to the end of the packet. A
        packet cut short is read as far as it goes."""
        known = self.flag(CLIENT_QUERY_ATTRIBUTES)
        for attributes in (True, False) if known is None else (known,):
            trial = _Fields(fields.data, fields.pos)
            try:
                literals, bound = _execute_parameters(trial, statement, flags, attributes)
            except _Malformed:
                if cut:
                    return []
                continue
            if literals is None:
                return []
            if trial.left and not cut:
                continue
            if bound is not None:
                statement.param_types = bound
            return literals
        self.parse_errors += 1
        return []

    def _read_statement_command(self, code: int, fields: _Fields, cut: bool) -> tuple[str, _Response | None]:
        """StmtClose, StmtReset, StmtSendLongData: shown by their statement's text."""
        statement_id = fields.uint(4)
        statement = self._statements.get(statement_id)
        text = statement.text if statement else _unknown_statement(statement_id)
        if code == COM_STMT_CLOSE:
            self._statements.pop(statement_id, None)
            return text, None
        if code == COM_STMT_SEND_LONG_DATA:
            if statement:
                statement.long_data.add(fields.uint(2))
            return text, None
        if statement:
            statement.long_data.clear()
        return text, _StatusResponse(self, code)

    def _read_field_list(self, code: int, fields: _Fields, cut: bool) -> tuple[str, _Response]:
        table = _text(fields.cstring())
        wildcard = _text(fields.rest())
        return f"{table} {wildcard}" if wildcard else table, _FieldListResponse(self)

    def _read_simple(self, code: int, fields: _Fields, cut: bool) -> tuple[str, _Response | None]:
        """Commands shown by their argument, if any: InitDB (a schema),
        ChangeUser (a user), SetOption; Ping, Statistics, ResetConnection, Quit."""
        if code == COM_INIT_DB:
            request = _text(fields.rest())
        elif code == COM_CHANGE_USER:
            request = _text(fields.cstring())
        elif code == COM_SET_OPTION:
            option = fields.uint(2)
            request = SET_OPTIONS.get(option, str(option))
        else:
            request = ""
        if code in (COM_CHANGE_USER, COM_RESET_CONNECTION):  # the server frees the session's statements
            self._statements.clear()
        return request, None if code == COM_QUIT else _StatusResponse(self, code)

    # Responses

    def _answer(self, exchange: _Exchange, packet: MysqlPacket) -> list[MysqlEvent]:
        try:
            done = exchange.response.add(packet)
        except _Malformed:
            self.parse_errors += 1
            self._drop_exchange()
            return []
        if not done:
            return []
        self._exchange = None
        response = exchange.response
        return [
            MysqlEvent(
                exchange.command, exchange.request, response.status, response.body, exchange.start_ns, packet.end_ns
            )
        ]

    def _drop_exchange(self) -> None:
        if self._exchange is not None:
            self.dropped_commands += 1
            self._exchange = None
        self._ignoring = True

    def terminator_status(self, payload: bytes) -> int:
        """Server status flags of the EOF or OK that ends rows or definitions."""
        if len(payload) == 5 and self.deprecate_eof is not True:
            return int.from_bytes(payload[3:5], "little")
        return _parse_ok(payload).status

    def remember_statement(self, statement_id: int, text: str, param_count: int) -> None:
        self._statements[statement_id] = _Statement(text[: self.body_limit + 1], param_count)
        self._statements.move_to_end(statement_id)
        if len(self._statements) > MAX_STATEMENTS:
            self._statements.popitem(last=False)


_COMMAND_READERS: dict[int | None, Callable] = {
    COM_QUERY: MysqlSession._read_query,
    COM_STMT_PREPARE: MysqlSession._read_prepare,
    COM_STMT_EXECUTE: MysqlSession._read_execute,
    COM_STMT_CLOSE: MysqlSession._read_statement_command,
    COM_STMT_RESET: MysqlSession._read_statement_command,
    COM_STMT_SEND_LONG_DATA: MysqlSession._read_statement_command,
    COM_FIELD_LIST: MysqlSession._read_field_list,
    **dict.fromkeys(
        (COM_INIT_DB, COM_CHANGE_USER, COM_SET_OPTION, COM_PING, COM_STATISTICS, COM_RESET_CONNECTION, COM_QUIT),
        MysqlSession._read_simple,
    ),
}


def _greeting_capabilities(payload: bytes) -> int:
    """The server's capability flags from its HandshakeV10."""
    fields = _Fields(payload, 1)
    version = fields.cstring()
    if not version or not version.isascii() or not version.decode().isprintable():
        raise _Malformed
    fields.take(4 + 8 + 1)  # connection id, first part of the auth data, filler
    capabilities = fields.uint(2)
    if fields.left >= 5:
        fields.take(3)  # character set, status flags
        capabilities |= fields.uint(2) << 16
    return capabilities


class MysqlTrace(PairedTrace):
    table = "mysql_events"

    def __init__(self, body_limit: int):
        super().__init__(PacketReader(restart_seq=0), PacketReader(restart_seq=1))
        self.session = MysqlSession(body_limit)

    @property
    def parse_errors(self) -> int:
        session = self.session
        return (
            self.requests.parse_errors + self.responses.parse_errors
            + session.parse_errors + session.unmatched_responses
        )

    def on_bytes(self, request_side: bool, data: bytes, time_ns: int) -> None:
        if self._take_turn(request_side):
            super().on_bytes(request_side, data, time_ns)

    def on_gap(self, request_side: bool, lost_bytes: int, time_ns: int) -> None:
        if not self._take_turn(request_side):
            return
        reader = self._reader(request_side)
        was_lost = reader.framing_lost
        super().on_gap(request_side, lost_bytes, time_ns)
        if reader.framing_lost and not was_lost:
            self.session.framing_lost()

    def on_close(self, time_ns: int) -> None:
        self.session.close()

    def _take_turn(self, request_side: bool) -> bool:
        """Whether this side's bytes are parsed at all (not once the session
        stopped); if so, this side speaking ends the other's turn (see
        PacketReader.restart)."""
        if self.session.stopped:
            return False
        self._reader(not request_side).restart()
        return True

    def _reader(self, request_side: bool) -> PacketReader:
        return self.requests if request_side else self.responses

    def _add(self, request_side: bool, packets: list[MysqlPacket]) -> None:
        session = self.session
        for packet in packets:
            try:
                events = session.on_request(packet) if request_side else session.on_response(packet)
            except _Desync:  # the packets framed after it are no better
                self._reader(request_side).lose_framing()
                return
            self._rows += map(_row, events)


def _row(event: MysqlEvent) -> dict:
    return {
        "time_ns": event.start_ns,
        "req_cmd": event.command,
        "req_body": event.request,
        "resp_status": event.status,
        "resp_body": event.response,
        "latency": event.end_ns - event.start_ns,
    }
