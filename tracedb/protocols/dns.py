"""DNS: the messages of one UDP or TCP flow, and queries paired with their answers.

This module owns the DNS message format of RFC 1035 §4 (header, question,
resource records, name compression) and its two transports, for traced
traffic that may be cut short by the capture limit or lose bytes:

- `parse_message` turns the bytes of one message into a `DnsMessage`. Names
  may use compression pointers, which must point before the name (or the
  pointer run) that uses them: every encoder writes them that way, and it
  makes pointer loops impossible. An EDNS OPT record (RFC 6891) is read like
  any other; its extended RCODE bits complete the header's.
- `DnsDatagramReader` (UDP) takes one whole datagram per `feed()`: the caller
  guarantees that each syscall's bytes are one datagram. A datagram cut by the
  capture limit arrives as `feed(prefix)` then `gap(rest)`; the reader keeps
  the records the prefix holds whole and marks the message
  `capture_truncated`. It cannot tell such a prefix from a short datagram
  until the next call, so a datagram that ends early is held until then.
- `DnsStreamReader` (TCP) reassembles messages behind their 2-byte length
  (RFC 1035 §4.2.2). A gap inside a message keeps the framing: the message
  is kept as a truncated prefix. A gap elsewhere loses the framing; reading
  resumes at the next plausible length and header.
- `DnsStitcher` pairs queries with responses by transaction id and question,
  not by order: UDP answers may come out of order.
- `DnsTrace` / `DnsTcpTrace` are the socket tracer's view of one flow: bytes
  of both directions in, dns_events rows out.

Memory is bounded: a TCP message is at most 65535 bytes, pending queries are
capped per flow, and the JSON of a message's records stops at `body_limit`
characters.
"""

from __future__ import annotations

import ipaddress
import json
import struct
from dataclasses import dataclass, field

from tracedb.protocols.base import PairedTrace

HEADER_SIZE = 12
MAX_NAME_WIRE_LENGTH = 255  # RFC 1035 §3.1, labels and length bytes
MAX_PENDING_QUERIES = 1024
UNKNOWN_RDATA_SHOWN = 32  # bytes of an unrendered record type shown as hex
_LENGTH_PREFIX = 2
_CANDIDATE_SIZE = _LENGTH_PREFIX + HEADER_SIZE  # bytes needed to judge a TCP resync candidate
_MIN_QUESTION = 5  # root name, type, class
_MIN_RECORD = 11  # root name, type, class, ttl, rdlength

TYPE_A, TYPE_NS, TYPE_CNAME, TYPE_SOA, TYPE_PTR, TYPE_MX, TYPE_TXT = 1, 2, 5, 6, 12, 15, 16
TYPE_AAAA, TYPE_SRV, TYPE_OPT = 28, 33, 41
CLASS_IN = 1

TYPE_NAMES = {
    TYPE_A: "A", TYPE_NS: "NS", TYPE_CNAME: "CNAME", TYPE_SOA: "SOA", TYPE_PTR: "PTR", 13: "HINFO",
    TYPE_MX: "MX", TYPE_TXT: "TXT", TYPE_AAAA: "AAAA", TYPE_SRV: "SRV", 35: "NAPTR", TYPE_OPT: "OPT",
    43: "DS", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY", 50: "NSEC3", 64: "SVCB", 65: "HTTPS",
    251: "IXFR", 252: "AXFR", 255: "ANY", 257: "CAA",
}
CLASS_NAMES = {CLASS_IN: "IN", 3: "CH", 4: "HS", 254: "NONE", 255: "ANY"}
RCODE_NAMES = {
    0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
    6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE", 16: "BADVERS",
}
_OPCODES = frozenset((0, 1, 2, 4, 5))  # QUERY, IQUERY, STATUS, NOTIFY, UPDATE


class DnsError(Exception):
    """The bytes are not a DNS message."""


class _Short(DnsError):
    """The bytes end before the message does."""


@dataclass
class DnsHeader:
    id: int
    qr: int
    opcode: int
    aa: int
    tc: int
    rd: int
    ra: int
    z: int
    ad: int
    cd: int
    rcode: int  # the header's 4 bits; see DnsMessage.rcode
    qdcount: int
    ancount: int
    nscount: int
    arcount: int


@dataclass
class DnsQuestion:
    name: str
    type: int
    klass: int


@dataclass
class DnsRecord:
    name: str
    type: int
    klass: int
    ttl: int
    data: dict  # the RDATA as JSON-ready fields


@dataclass
class DnsMessage:
    header: DnsHeader
    start_ns: int = 0  # timestamp of the syscall that carried its first byte
    end_ns: int = 0  # ... and its last byte
    questions: list[DnsQuestion] = field(default_factory=list)
    answers: list[DnsRecord] = field(default_factory=list)
    authorities: list[DnsRecord] = field(default_factory=list)
    additionals: list[DnsRecord] = field(default_factory=list)
    capture_truncated: bool = False  # only the records before the lost bytes are here

    @property
    def rcode(self) -> int:
        """The full response code: an OPT record carries its upper 8 bits (RFC 6891 §6.1.3)."""
        for record in self.additionals:
            if record.type == TYPE_OPT:
                return record.data["extended_rcode"] << 4 | self.header.rcode
        return self.header.rcode


# Parsing


def parse_message(data: bytes, start_ns: int = 0, end_ns: int = 0, partial: bool = False) -> DnsMessage:
    """The message in data (bytes after its end are ignored). With partial, a
    message that data ends inside keeps its header and the questions and
    records data holds whole, and is marked capture_truncated; it needs its
    header whole."""
    msg = DnsMessage(_parse_header(data), start_ns, end_ns)
    header = msg.header
    try:
        pos = HEADER_SIZE
        for _ in range(header.qdcount):
            question, pos = _parse_question(data, pos)
            msg.questions.append(question)
        for section, count in (
            (msg.answers, header.ancount), (msg.authorities, header.nscount), (msg.additionals, header.arcount),
        ):
            for _ in range(count):
                record, pos = _parse_record(data, pos)
                section.append(record)
    except _Short:
        if not partial:
            raise
        msg.capture_truncated = True
    return msg


def _parse_header(data: bytes) -> DnsHeader:
    if len(data) < HEADER_SIZE:
        raise _Short
    ident, flags, qd, an, ns, ar = struct.unpack_from(">HHHHHH", data)
    return DnsHeader(
        id=ident, qr=flags >> 15, opcode=flags >> 11 & 0xF, aa=flags >> 10 & 1, tc=flags >> 9 & 1,
        rd=flags >> 8 & 1, ra=flags >> 7 & 1, z=flags >> 6 & 1, ad=flags >> 5 & 1, cd=flags >> 4 & 1,
        rcode=flags & 0xF, qdcount=qd, ancount=an, nscount=ns, arcount=ar,
    )


def _parse_question(data: bytes, pos: int) -> tuple[DnsQuestion, int]:
    name, pos = _parse_name(data, pos)
    qtype, qclass = _unpack(">HH", data, pos)
    return DnsQuestion(name, qtype, qclass), pos + 4


def _parse_record(data: bytes, pos: int) -> tuple[DnsRecord, int]:
    name, pos = _parse_name(data, pos)
    rtype, rclass, ttl, rdlength = _unpack(">HHIH", data, pos)
    start = pos + 10
    end = start + rdlength
    if end > len(data):
        raise _Short
    if rtype == TYPE_OPT:  # class and TTL hold EDNS fields
        rdata = {"udp_payload_size": rclass, "extended_rcode": ttl >> 24, "version": ttl >> 16 & 0xFF,
                 "do": ttl >> 15 & 1, "rdlength": rdlength}
    else:
        rdata = _parse_rdata(data, start, end, rtype)
    return DnsRecord(name, rtype, rclass, ttl, rdata), end


def _parse_name(data: bytes, pos: int) -> tuple[str, int]:
    """The name at pos and the index just past it. Each pointer must point
    below the start of the labels read so far, so every jump goes lower."""
    labels: list[str] = []
    wire_length = 1  # the root's zero byte
    after: int | None = None  # where the name ends in place: after its first pointer
    floor = pos
    try:
        while length := data[pos]:
            if length >= 0xC0:
                target = (length & 0x3F) << 8 | data[pos + 1]
                if target >= floor:
                    raise DnsError("compression pointer does not point backwards")
                if after is None:
                    after = pos + 2
                pos = floor = target
                continue
            if length > 63:  # extended and reserved label types (RFC 6891 §5)
                raise DnsError("unknown label type")
            wire_length += length + 1
            if wire_length > MAX_NAME_WIRE_LENGTH:
                raise DnsError("name too long")
            pos += 1 + length
            if pos >= len(data):  # the label, or the byte after it, is missing
                raise _Short
            labels.append(_label_text(data[pos - length : pos]))
    except IndexError:
        raise _Short from None
    name = ".".join(labels) + "." if labels else "."
    return name, after if after is not None else pos + 1


def _label_text(label: bytes) -> str:
    """Presentation form (RFC 4343 §2.1): dots and backslashes inside a label
    escaped, bytes outside printable ASCII as \\DDD."""
    if label.isalnum() or all(32 < b < 127 and b not in b".\\" for b in label):
        return label.decode("ascii")
    return "".join(
        chr(b) if 32 < b < 127 and b not in b".\\" else f"\\{chr(b)}" if b in b".\\" else f"\\{b:03d}"
        for b in label
    )


def _parse_rdata(data: bytes, start: int, end: int, rtype: int) -> dict:
    if rtype == TYPE_A:
        return {"addr": str(ipaddress.IPv4Address(_exact(data, start, end, 4)))}
    if rtype == TYPE_AAAA:
        return {"addr": str(ipaddress.IPv6Address(_exact(data, start, end, 16)))}
    if rtype in _SINGLE_NAME_KEYS:
        return {_SINGLE_NAME_KEYS[rtype]: _name_within(data, start, end)}
    if rtype == TYPE_MX:
        (preference,) = _unpack_within(">H", data, start, end)
        return {"preference": preference, "exchange": _name_within(data, start + 2, end)}
    if rtype == TYPE_SRV:
        priority, weight, port = _unpack_within(">HHH", data, start, end)
        return {"priority": priority, "weight": weight, "port": port, "target": _name_within(data, start + 6, end)}
    if rtype == TYPE_SOA:
        return _parse_soa(data, start, end)
    if rtype == TYPE_TXT:
        return {"txt": _character_strings(data[start:end])}
    return {"rdlength": end - start, "rdata": data[start : min(end, start + UNKNOWN_RDATA_SHOWN)].hex()}


_SINGLE_NAME_KEYS = {TYPE_CNAME: "cname", TYPE_NS: "ns", TYPE_PTR: "ptr"}


def _parse_soa(data: bytes, start: int, end: int) -> dict:
    mname, pos = _parse_name(data, start)
    rname, pos = _parse_name(data, pos)
    serial, refresh, retry, expire, minimum = _unpack_within(">IIIII", data, pos, end)
    if pos + 20 != end:
        raise DnsError("SOA length")
    return {"mname": mname, "rname": rname, "serial": serial, "refresh": refresh, "retry": retry,
            "expire": expire, "minimum": minimum}


def _character_strings(rdata: bytes) -> list[str]:
    strings, pos = [], 0
    while pos < len(rdata):
        length = rdata[pos]
        if pos + 1 + length > len(rdata):
            raise DnsError("TXT string overruns its record")
        strings.append(rdata[pos + 1 : pos + 1 + length].decode("utf-8", "backslashreplace"))
        pos += 1 + length
    return strings


def _name_within(data: bytes, start: int, end: int) -> str:
    """A name inside RDATA, which must end where the RDATA does."""
    name, after = _parse_name(data, start)
    if after != end:
        raise DnsError("name does not fill its record")
    return name


def _exact(data: bytes, start: int, end: int, size: int) -> bytes:
    if end - start != size:
        raise DnsError("address length")
    return data[start:end]


def _unpack_within(fmt: str, data: bytes, start: int, end: int) -> tuple:
    if start + struct.calcsize(fmt) > end:
        raise DnsError("record too short")
    return struct.unpack_from(fmt, data, start)


def _unpack(fmt: str, data: bytes, pos: int) -> tuple:
    if pos + struct.calcsize(fmt) > len(data):
        raise _Short
    return struct.unpack_from(fmt, data, pos)


# Readers: the transports


class _Reader:
    """What the two transports share: the direction they carry and their counts."""

    def __init__(self, is_query: bool) -> None:
        self.is_query = is_query
        self.parse_errors = 0
        self.truncated_messages = 0  # kept as a prefix: the capture limit or lost bytes cut them
        self.lost_messages = 0  # cut so early that not even the header was left

    def _accept(self, msg: DnsMessage, done: list[DnsMessage]) -> None:
        # The role comes from the kernel; a message against it (a response
        # on the query side) means the flow is not what it seemed.
        if msg.header.qr == self.is_query:
            self.parse_errors += 1
            return
        self.truncated_messages += msg.capture_truncated
        done.append(msg)

    def _accept_prefix(self, prefix: bytes, start_ns: int, end_ns: int, done: list[DnsMessage]) -> None:
        try:
            self._accept(parse_message(prefix, start_ns, end_ns, partial=True), done)
        except _Short:
            self.lost_messages += 1
        except DnsError:
            self.parse_errors += 1


class DnsDatagramReader(_Reader):
    """UDP: every feed is one datagram holding one message."""

    def __init__(self, is_query: bool) -> None:
        super().__init__(is_query)
        self._held: tuple[bytes, int] | None = None  # a datagram that ended early, and its time

    def feed(self, data: bytes, timestamp_ns: int) -> list[DnsMessage]:
        done: list[DnsMessage] = []
        self._settle_held()
        try:
            self._accept(parse_message(data, timestamp_ns, timestamp_ns), done)
        except _Short:
            self._held = (data, timestamp_ns)
        except DnsError:
            self.parse_errors += 1
        return done

    def gap(self, lost_bytes: int, timestamp_ns: int = 0) -> list[DnsMessage]:
        """The held datagram, if any, was longer than captured. A gap after a
        whole message (lost datagrams, or bytes past a message's end) loses
        nothing that can be told apart."""
        done: list[DnsMessage] = []
        if self._held is not None:
            data, time_ns = self._held
            self._held = None
            self._accept_prefix(data, time_ns, time_ns, done)
        return done

    def close(self) -> None:
        self._settle_held()

    def _settle_held(self) -> None:
        """Nothing was lost after the held datagram: it was shorter than its header says."""
        if self._held is not None:
            self._held = None
            self.parse_errors += 1


class DnsStreamReader(_Reader):
    """TCP: messages behind a 2-byte length, reassembled across feeds."""

    def __init__(self, is_query: bool) -> None:
        super().__init__(is_query)
        self.resyncs = 0
        self._buf = bytearray()
        self._start_ns = 0  # time of the first byte of the message at the front of _buf
        self._searching = False  # framing lost: looking for a plausible length and header
        self._prefix = b""  # the kept start of a message a gap cut into
        self._skip = 0  # bytes of that message still to pass over

    def feed(self, data: bytes, timestamp_ns: int) -> list[DnsMessage]:
        done: list[DnsMessage] = []
        if self._skip:
            skipped = min(self._skip, len(data))
            self._pass_over(skipped, timestamp_ns, done)
            data = data[skipped:]
        if data:
            if not self._buf:
                self._start_ns = timestamp_ns
            self._buf += data
            self._read_messages(timestamp_ns, done)
        return done

    def gap(self, lost_bytes: int, timestamp_ns: int = 0) -> list[DnsMessage]:
        """Lost bytes inside a message of known length cut it to a prefix and
        keep the framing; anywhere else they lose it."""
        done: list[DnsMessage] = []
        if not self._skip and not self._searching and len(self._buf) >= _LENGTH_PREFIX:
            self._skip = _LENGTH_PREFIX + self._message_length() - len(self._buf)
            self._prefix = bytes(self._buf[_LENGTH_PREFIX:])
            self._buf.clear()
        skipped = min(self._skip, lost_bytes)
        self._pass_over(skipped, timestamp_ns, done)
        if lost_bytes > skipped:
            self._lose_framing()
        return done

    def close(self) -> None:
        self._buf.clear()
        self._prefix, self._skip = b"", 0

    def _pass_over(self, count: int, timestamp_ns: int, done: list[DnsMessage]) -> None:
        """Pass over count bytes of a message a gap cut into; at its end, keep its prefix."""
        if not self._skip:
            return
        self._skip -= count
        if not self._skip:
            self._accept_prefix(self._prefix, self._start_ns, timestamp_ns, done)
            self._prefix = b""

    def _message_length(self) -> int:
        return self._buf[0] << 8 | self._buf[1]

    def _lose_framing(self) -> None:
        self._buf.clear()
        self._searching = True
        self.resyncs += 1

    def _read_messages(self, timestamp_ns: int, done: list[DnsMessage]) -> None:
        # A malformed message under a sound framing costs only itself: the
        # length still says where the next one begins. After a resync the
        # first message's start time is that of the feed that began the
        # buffer, which may be a little early.
        while True:
            if self._searching and not self._find_candidate():
                return
            if len(self._buf) < _LENGTH_PREFIX:
                return
            end = _LENGTH_PREFIX + self._message_length()
            if len(self._buf) < end:
                return
            try:
                msg = parse_message(bytes(self._buf[_LENGTH_PREFIX:end]), self._start_ns, timestamp_ns)
            except DnsError:
                if self._searching:  # no message began at the candidate: search on past it
                    del self._buf[:1]
                    continue
                self.parse_errors += 1
            else:
                self._searching = False
                self._accept(msg, done)
            del self._buf[:end]
            self._start_ns = timestamp_ns

    def _find_candidate(self) -> bool:
        """Move the buffer's front to the next plausible length and header;
        False if none is there yet (the bytes that may begin one are kept)."""
        buf = self._buf
        for pos in range(max(0, len(buf) - _CANDIDATE_SIZE + 1)):
            if _plausible_framed_header(buf, pos, self.is_query):
                del buf[:pos]
                return True
        del buf[: max(0, len(buf) - _CANDIDATE_SIZE + 1)]
        return False


def _plausible_framed_header(buf: bytearray, pos: int, is_query: bool) -> bool:
    """Whether a TCP message may begin at buf[pos]: its length leaves room for
    the header's counts, the header's QR fits the direction, its opcode is
    assigned, the Z bit is clear, and a query asks one question."""
    length, _, flags, qd, an, ns, ar = struct.unpack_from(">HHHHHHH", buf, pos)
    if flags >> 15 == is_query or flags >> 11 & 0xF not in _OPCODES or flags & 0x40:
        return False
    if is_query and qd != 1:
        return False
    return HEADER_SIZE + _MIN_QUESTION * qd + _MIN_RECORD * (an + ns + ar) <= length


# Pairing


class DnsStitcher:
    """Pairs each response with the oldest pending query of the same id and
    question that began before it. A response without a question section (as
    some FORMERR answers are) pairs on the id alone. A retransmitted query
    leaves its first copy paired, so latency counts from the first attempt;
    later copies stay unanswered."""

    def __init__(self, max_pending: int = MAX_PENDING_QUERIES) -> None:
        self.max_pending = max_pending
        self.unmatched_responses = 0
        self.dropped_queries = 0  # never answered while the flow lived, or pushed out by newer ones
        self._pending: list[DnsMessage] = []  # in arrival order

    @property
    def pending_queries(self) -> int:
        return len(self._pending)

    def add_queries(self, msgs: list[DnsMessage]) -> None:
        self._pending += msgs
        excess = len(self._pending) - self.max_pending
        if excess > 0:
            del self._pending[:excess]
            self.dropped_queries += excess

    def add_responses(self, msgs: list[DnsMessage]) -> list[tuple[DnsMessage, DnsMessage]]:
        pairs = []
        for resp in msgs:
            index = self._match(resp)
            if index is None:
                self.unmatched_responses += 1
            else:
                pairs.append((self._pending.pop(index), resp))
        return pairs

    def close(self) -> None:
        self.dropped_queries += len(self._pending)
        self._pending.clear()

    def _match(self, resp: DnsMessage) -> int | None:
        key = _question_key(resp)
        for index, query in enumerate(self._pending):
            if (
                query.header.id == resp.header.id
                and (not key or _question_key(query) == key)
                and query.start_ns <= resp.start_ns
            ):
                return index
        return None


def _question_key(msg: DnsMessage) -> tuple:
    # Names compare without case: resolvers may randomise it (DNS 0x20).
    return tuple((q.name.lower(), q.type, q.klass) for q in msg.questions)


# Columns


def header_json(msg: DnsMessage) -> str:
    h = msg.header
    return _json(
        {
            "id": h.id, "qr": h.qr, "opcode": h.opcode, "aa": h.aa, "tc": h.tc, "rd": h.rd, "ra": h.ra,
            "z": h.z, "ad": h.ad, "cd": h.cd, "rcode": rcode_name(msg.rcode),
            "qdcount": h.qdcount, "ancount": h.ancount, "nscount": h.nscount, "arcount": h.arcount,
        }
    )


def body_json(msg: DnsMessage, limit: int) -> str:
    """A query's questions ("queries") or a response's records ("answers"),
    then the other sections that are not empty. Entries are kept in order
    while their JSON fits in limit characters; the rest are counted in
    "omitted"."""
    if msg.header.qr:
        sections = [("answers", msg.answers)]
    else:
        sections = [("queries", msg.questions)] + ([("answers", msg.answers)] if msg.answers else [])
    sections += [(key, records) for key, records in (("authorities", msg.authorities),
                                                     ("additionals", msg.additionals)) if records]
    members = []
    room, omitted = limit, 0
    for key, entries in sections:
        kept = []
        for entry in entries:
            if omitted:
                omitted += 1
                continue
            rendered = _json(question_json(entry) if isinstance(entry, DnsQuestion) else record_json(entry))
            if len(rendered) + 1 > room:
                omitted += 1
                continue
            room -= len(rendered) + 1
            kept.append(rendered)
        members.append(f'"{key}":[{",".join(kept)}]')
    if omitted:
        members.append(f'"omitted":{omitted}')
    if msg.capture_truncated:
        members.append('"capture_truncated":true')
    return "{" + ",".join(members) + "}"


def question_json(q: DnsQuestion) -> dict:
    out = {"name": q.name, "type": type_name(q.type)}
    if q.klass != CLASS_IN:
        out["class"] = class_name(q.klass)
    return out


def record_json(r: DnsRecord) -> dict:
    out = {"name": r.name, "type": type_name(r.type)}
    if r.type != TYPE_OPT:  # its class and TTL are EDNS fields, in data
        if r.klass != CLASS_IN:
            out["class"] = class_name(r.klass)
        out["ttl"] = r.ttl
    out.update(r.data)
    return out


def type_name(rtype: int) -> str:
    return TYPE_NAMES.get(rtype, f"TYPE{rtype}")  # RFC 3597 §5 spelling for unknown types


def class_name(klass: int) -> str:
    return CLASS_NAMES.get(klass, f"CLASS{klass}")


def rcode_name(rcode: int) -> str:
    return RCODE_NAMES.get(rcode, f"RCODE{rcode}")


def latency_ns(query: DnsMessage, response: DnsMessage) -> int:
    """From the query's first byte to the response's last."""
    return response.end_ns - query.start_ns


_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class DnsTrace(PairedTrace):
    """One flow's DNS, over UDP unless transport="tcp"."""

    table = "dns_events"

    def __init__(self, body_limit: int, transport: str = "udp"):
        readers = {"udp": DnsDatagramReader, "tcp": DnsStreamReader}
        if transport not in readers:
            raise ValueError(f"transport must be udp or tcp, got {transport!r}")
        super().__init__(readers[transport](is_query=True), readers[transport](is_query=False))
        self.transport = transport
        self.body_limit = body_limit
        self.stitcher = DnsStitcher()

    @property
    def parse_errors(self) -> int:
        return self.requests.parse_errors + self.responses.parse_errors + self.stitcher.unmatched_responses

    def on_close(self, time_ns: int) -> None:
        self.requests.close()
        self.responses.close()
        self.stitcher.close()

    def _add(self, request_side: bool, messages: list[DnsMessage]) -> None:
        if request_side:
            self.stitcher.add_queries(messages)
            return
        for query, response in self.stitcher.add_responses(messages):
            self._rows.append(
                {
                    "time_ns": query.start_ns,
                    "req_header": header_json(query),
                    "req_body": body_json(query, self.body_limit),
                    "resp_header": header_json(response),
                    "resp_body": body_json(response, self.body_limit),
                    "latency": latency_ns(query, response),
                }
            )


class DnsTcpTrace(DnsTrace):
    """DNS over TCP, for the registry, which builds a trace from body_limit alone."""

    def __init__(self, body_limit: int):
        super().__init__(body_limit, transport="tcp")
