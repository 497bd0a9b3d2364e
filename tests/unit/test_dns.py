import json
import struct

import pytest

from tracedb.protocols.dns import (
    DnsDatagramReader,
    DnsError,
    DnsStitcher,
    DnsStreamReader,
    DnsTcpTrace,
    DnsTrace,
    body_json,
    header_json,
    parse_message,
)
from tracedb.schema import builtin_schemas

# Message builders. Names are written whole unless a test compresses them itself.


def name(text: str) -> bytes:
    labels = [label.encode() for label in text.rstrip(".").split(".") if label]
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"


def pointer(offset: int) -> bytes:
    return struct.pack(">H", 0xC000 | offset)


def header(ident: int, flags: int, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack(">HHHHHH", ident, flags, qd, an, ns, ar)


def question(qname: str, qtype: int = 1, qclass: int = 1) -> bytes:
    return name(qname) + struct.pack(">HH", qtype, qclass)


def record(owner: bytes, rtype: int, rdata: bytes, ttl: int = 300, rclass: int = 1) -> bytes:
    return owner + struct.pack(">HHIH", rtype, rclass, ttl, len(rdata)) + rdata


RD, QR_RA = 0x0100, 0x8180  # a query asking recursion; a response with RD and RA
NXDOMAIN = QR_RA | 3
A, NS, CNAME, SOA, PTR, MX, TXT, AAAA, SRV, OPT = 1, 2, 5, 6, 12, 15, 16, 28, 33, 41


def query(ident: int = 0x1234, qname: str = "example.com", qtype: int = A) -> bytes:
    return header(ident, RD) + question(qname, qtype)


def cname_answer(ident: int = 0x1234) -> bytes:
    """www.example.com CNAME example.com, then two A records, all compressed."""
    head = header(ident, QR_RA, an=3) + question("www.example.com")
    target = 12 + 4  # "example.com" inside the question's "www.example.com"
    return (
        head
        + record(pointer(12), CNAME, pointer(target), ttl=60)
        + record(pointer(target), A, bytes([93, 184, 216, 34]))
        + record(pointer(target), A, bytes([93, 184, 216, 35]))
    )


def aaaa_answer(ident: int = 0x1234) -> bytes:
    return header(ident, QR_RA, an=1) + question("example.com", AAAA) + record(
        pointer(12), AAAA, bytes.fromhex("26062800021f00000000000000000001")
    )


def nxdomain_answer(ident: int = 0x1234) -> bytes:
    soa = name("ns.example.com") + name("admin.example.com") + struct.pack(">IIIII", 2024, 7200, 900, 1209600, 86400)
    return header(ident, NXDOMAIN, ns=1) + question("nope.example.com") + record(pointer(17), SOA, soa, ttl=900)


def a_answer(ident: int = 0x1234, qname: str = "example.com", addr: bytes = b"\x01\x02\x03\x04") -> bytes:
    return header(ident, QR_RA, an=1) + question(qname) + record(pointer(12), A, addr)


# Parsing


def test_query_for_a_with_recursion_desired():
    msg = parse_message(query())
    assert json.loads(header_json(msg)) == {
        "id": 0x1234, "qr": 0, "opcode": 0, "aa": 0, "tc": 0, "rd": 1, "ra": 0, "z": 0, "ad": 0, "cd": 0,
        "rcode": "NOERROR", "qdcount": 1, "ancount": 0, "nscount": 0, "arcount": 0,
    }
    assert json.loads(body_json(msg, 1024)) == {"queries": [{"name": "example.com.", "type": "A"}]}


def test_cname_and_two_addresses_through_compression_pointers():
    msg = parse_message(cname_answer())
    assert json.loads(body_json(msg, 1024)) == {
        "answers": [
            {"name": "www.example.com.", "type": "CNAME", "ttl": 60, "cname": "example.com."},
            {"name": "example.com.", "type": "A", "ttl": 300, "addr": "93.184.216.34"},
            {"name": "example.com.", "type": "A", "ttl": 300, "addr": "93.184.216.35"},
        ]
    }
    assert json.loads(header_json(msg))["ra"] == 1


def test_aaaa_answer():
    (answer,) = json.loads(body_json(parse_message(aaaa_answer()), 1024))["answers"]
    assert answer == {"name": "example.com.", "type": "AAAA", "ttl": 300, "addr": "2606:2800:21f::1"}


def test_nxdomain_with_soa_in_authority():
    msg = parse_message(nxdomain_answer())
    assert json.loads(header_json(msg))["rcode"] == "NXDOMAIN"
    assert json.loads(body_json(msg, 1024)) == {
        "answers": [],
        "authorities": [
            {
                "name": "example.com.", "type": "SOA", "ttl": 900, "mname": "ns.example.com.",
                "rname": "admin.example.com.", "serial": 2024, "refresh": 7200, "retry": 900,
                "expire": 1209600, "minimum": 86400,
            }
        ],
    }


def test_other_record_types():
    records = [
        record(pointer(12), NS, name("ns1.example.com")),
        record(pointer(12), MX, struct.pack(">H", 10) + name("mail.example.com")),
        record(pointer(12), TXT, b"\x05hello\x00\x04v=ok"),
        record(pointer(12), SRV, struct.pack(">HHH", 1, 5, 5060) + name("sip.example.com")),
        record(pointer(12), PTR, name("host.example.com")),
        record(pointer(12), 65, b"\x00\x01\x00"),
        record(pointer(12), A, b"\x01\x02\x03\x04", rclass=3),
    ]
    msg = parse_message(header(1, QR_RA, an=len(records)) + question("example.com") + b"".join(records))
    rendered = json.loads(body_json(msg, 4096))["answers"]
    assert [{k: v for k, v in r.items() if k not in ("name", "ttl")} for r in rendered] == [
        {"type": "NS", "ns": "ns1.example.com."},
        {"type": "MX", "preference": 10, "exchange": "mail.example.com."},
        {"type": "TXT", "txt": ["hello", "", "v=ok"]},
        {"type": "SRV", "priority": 1, "weight": 5, "port": 5060, "target": "sip.example.com."},
        {"type": "PTR", "ptr": "host.example.com."},
        {"type": "HTTPS", "rdlength": 3, "rdata": "000100"},
        {"type": "A", "class": "CH", "addr": "1.2.3.4"},
    ]


def test_unknown_type_is_named_by_number():
    msg = parse_message(header(1, QR_RA, an=1) + question("x", 4000) + record(pointer(12), 4000, b"\xab\xcd"))
    assert json.loads(body_json(msg, 1024))["answers"][0]["type"] == "TYPE4000"
    assert json.loads(body_json(msg, 1024))["answers"][0]["rdata"] == "abcd"


def test_edns_opt_record_is_tolerated_and_extends_the_rcode():
    opt = record(b"\x00", OPT, b"", ttl=1 << 24 | 1 << 15, rclass=1232)  # extended rcode 1, DO set
    msg = parse_message(header(7, 0x8180, qd=1, ar=1) + question("example.com") + opt)
    assert json.loads(body_json(msg, 1024))["additionals"] == [
        {"name": ".", "type": "OPT", "udp_payload_size": 1232, "extended_rcode": 1, "version": 0, "do": 1,
         "rdlength": 0}
    ]
    assert json.loads(header_json(msg))["rcode"] == "BADVERS"


def test_label_bytes_are_escaped():
    raw = header(1, RD) + b"\x06a.b\\\x00\x01\x07example\x00" + struct.pack(">HH", 1, 1)
    assert parse_message(raw).questions[0].name == "a\\.b\\\\\\000\\001.example."


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(header(1, RD) + pointer(12) + b"\x00\x01\x00\x01", id="pointer to itself"),
        pytest.param(header(1, RD) + b"\x01a" + pointer(12) + b"\x00\x01\x00\x01", id="loop through a label"),
        pytest.param(header(1, RD) + pointer(20) + b"\x00\x01\x00\x01\x01a\x00", id="forward pointer"),
        pytest.param(header(1, RD) + b"\x41" + b"a" * 65 + b"\x00\x00\x01\x00\x01", id="reserved label type"),
        pytest.param(header(1, RD) + (b"\x3f" + b"a" * 63) * 4 + b"\x00\x00\x01\x00\x01",
                     id="name over 255 bytes"),
        pytest.param(header(1, QR_RA, an=1) + question("x") + record(pointer(12), A, b"\x01\x02\x03"), id="short A"),
        pytest.param(header(1, QR_RA, an=1) + question("x") + record(pointer(12), CNAME, name("a") + b"zz"),
                     id="name short of its record"),
        pytest.param(header(1, QR_RA, an=1) + question("x") + record(pointer(12), TXT, b"\x09abc"),
                     id="TXT overrun"),
    ],
)
def test_malformed_messages_raise(bad):
    with pytest.raises(DnsError):
        parse_message(bad)


def test_pointer_loop_is_a_counted_parse_error_on_the_trace():
    trace = DnsTrace(1024)
    loop = header(9, RD) + b"\x01a" + pointer(12) + b"\x00\x01\x00\x01"
    trace.on_bytes(True, loop, 1)
    trace.on_bytes(True, query(10), 2)
    trace.on_bytes(False, a_answer(10), 3)
    assert [json.loads(r["req_header"])["id"] for r in trace.take_rows()] == [10]
    assert trace.parse_errors == 1


def test_body_json_keeps_records_within_the_limit_and_counts_the_rest():
    msg = parse_message(cname_answer())
    doc = json.loads(body_json(msg, 120))
    assert [a["type"] for a in doc["answers"]] == ["CNAME"]
    assert doc["omitted"] == 2
    assert json.loads(body_json(msg, 0)) == {"answers": [], "omitted": 3}


# UDP: one datagram per call


def test_udp_answers_pair_by_id_and_question_not_by_order():
    trace = DnsTrace(1024)
    trace.on_bytes(True, query(1, "a.example"), 100)
    trace.on_bytes(True, query(2, "b.example"), 110)
    trace.on_bytes(True, query(1, "c.example"), 120)  # same id, another question
    trace.on_bytes(False, a_answer(2, "b.example"), 150)
    trace.on_bytes(False, a_answer(1, "c.example"), 170)
    trace.on_bytes(False, a_answer(1, "a.example"), 200)
    rows = trace.take_rows()
    assert [(json.loads(r["req_body"])["queries"][0]["name"], r["time_ns"], r["latency"]) for r in rows] == [
        ("b.example.", 110, 40),
        ("c.example.", 120, 50),
        ("a.example.", 100, 100),
    ]
    assert trace.parse_errors == 0


def test_row_columns():
    trace = DnsTrace(1024)
    trace.on_bytes(True, query(qname="www.example.com"), 10)
    trace.on_bytes(False, cname_answer(), 25)
    (row,) = trace.take_rows()
    assert set(row) == {"time_ns", "req_header", "req_body", "resp_header", "resp_body", "latency"}
    assert json.loads(row["resp_header"])["ancount"] == 3
    assert [a["type"] for a in json.loads(row["resp_body"])["answers"]] == ["CNAME", "A", "A"]
    assert (row["time_ns"], row["latency"]) == (10, 15)


def test_unanswered_queries_are_dropped_and_counted_at_close():
    trace = DnsTrace(1024)
    trace.on_bytes(True, query(1), 1)
    trace.on_bytes(True, query(2), 2)
    trace.on_bytes(False, a_answer(2), 3)
    trace.on_close(4)
    assert len(trace.take_rows()) == 1
    assert trace.stitcher.dropped_queries == 1
    assert trace.parse_errors == 0


def test_unmatched_and_misdirected_messages_are_errors():
    trace = DnsTrace(1024)
    trace.on_bytes(False, a_answer(5), 1)  # no query
    trace.on_bytes(True, a_answer(6), 2)  # a response on the query side
    trace.on_bytes(False, query(7), 3)  # a query on the response side
    assert trace.take_rows() == []
    assert trace.parse_errors == 3


def test_answer_before_its_query_is_unmatched():
    stitcher = DnsStitcher()
    stitcher.add_queries([parse_message(query(1), 100, 100)])
    assert stitcher.add_responses([parse_message(a_answer(1), 50, 50)]) == []
    assert stitcher.unmatched_responses == 1


def test_retransmitted_query_pairs_its_first_copy():
    trace = DnsTrace(1024)
    trace.on_bytes(True, query(3), 0)
    trace.on_bytes(True, query(3), 1_000_000_000)
    trace.on_bytes(False, a_answer(3), 1_000_000_500)
    assert [r["latency"] for r in trace.take_rows()] == [1_000_000_500]
    trace.on_close(2)
    assert trace.stitcher.dropped_queries == 1


def test_pending_queries_are_bounded():
    stitcher = DnsStitcher(max_pending=2)
    stitcher.add_queries([parse_message(query(i), i, i) for i in range(5)])
    assert (stitcher.pending_queries, stitcher.dropped_queries) == (2, 3)


def test_datagram_cut_by_the_capture_limit_is_kept_truncated():
    answer = cname_answer()
    cut = len(answer) - 5  # inside the last A record
    trace = DnsTrace(1024)
    trace.on_bytes(True, query(qname="www.example.com"), 1)
    trace.on_bytes(False, answer[:cut], 2)
    assert trace.take_rows() == []  # it may yet prove short or cut
    trace.on_gap(False, 5, 2)
    (row,) = trace.take_rows()
    body = json.loads(row["resp_body"])
    assert [a["type"] for a in body["answers"]] == ["CNAME", "A"]
    assert body["capture_truncated"] is True
    assert trace.responses.truncated_messages == 1
    assert trace.parse_errors == 0


def test_datagram_shorter_than_its_header_says_is_an_error():
    reader = DnsDatagramReader(is_query=False)
    assert reader.feed(cname_answer()[:-5], 1) == []
    assert [m.header.id for m in reader.feed(a_answer(8), 2)] == [8]
    assert reader.parse_errors == 1
    assert reader.feed(cname_answer()[:-5], 3) == []
    reader.close()
    assert reader.parse_errors == 2


def test_datagram_cut_inside_its_header_is_lost():
    reader = DnsDatagramReader(is_query=True)
    assert reader.feed(query()[:8], 1) == []
    assert reader.gap(100, 1) == []
    assert (reader.lost_messages, reader.parse_errors) == (1, 0)


def test_gap_after_a_whole_datagram_loses_nothing():
    reader = DnsDatagramReader(is_query=True)
    assert len(reader.feed(query(), 1)) == 1
    assert reader.gap(300, 2) == []
    assert len(reader.feed(query(2), 3)) == 1
    assert reader.parse_errors == reader.truncated_messages == 0


# TCP: messages behind a 2-byte length


def framed(message: bytes) -> bytes:
    return struct.pack(">H", len(message)) + message


TCP_CASES = {
    "query": (True, framed(query(1)) + framed(query(2, "b.example", AAAA))),
    "cname": (False, framed(cname_answer(1)) + framed(aaaa_answer(2))),
    "nxdomain": (False, framed(nxdomain_answer(1)) + framed(a_answer(2))),
}


@pytest.mark.parametrize("case", TCP_CASES)
def test_tcp_split_at_every_byte_boundary(case):
    is_query, stream = TCP_CASES[case]
    whole = DnsStreamReader(is_query).feed(stream, 0)
    assert len(whole) == 2
    first_length = 2 + struct.unpack_from(">H", stream)[0]
    for cut in range(len(stream) + 1):
        reader = DnsStreamReader(is_query)
        msgs = reader.feed(stream[:cut], 100) + reader.feed(stream[cut:], 200)
        assert [(m.header, m.questions, m.answers, m.authorities) for m in msgs] == [
            (m.header, m.questions, m.answers, m.authorities) for m in whole
        ], cut
        assert [(m.start_ns, m.end_ns) for m in msgs] == [
            (100 if cut else 200, 100 if cut >= first_length else 200),
            (100 if cut > first_length else 200, 100 if cut == len(stream) else 200),
        ], cut
        assert reader.parse_errors == 0


@pytest.mark.parametrize("case", TCP_CASES)
def test_tcp_one_byte_per_feed(case):
    is_query, stream = TCP_CASES[case]
    reader = DnsStreamReader(is_query)
    msgs = [m for i in range(len(stream)) for m in reader.feed(stream[i : i + 1], i)]
    assert [m.header.id for m in msgs] == [1, 2]
    assert msgs[1].end_ns == len(stream) - 1


def test_tcp_trace_pairs_a_query_with_its_answer():
    trace = DnsTcpTrace(1024)
    assert trace.transport == "tcp"
    request, response = framed(query(qname="www.example.com")), framed(cname_answer())
    trace.on_bytes(True, request[:5], 10)
    trace.on_bytes(True, request[5:], 11)
    trace.on_bytes(False, response, 30)
    (row,) = trace.take_rows()
    assert (row["time_ns"], row["latency"]) == (10, 20)


def test_tcp_gap_inside_a_message_keeps_a_truncated_prefix_and_the_framing():
    stream = framed(cname_answer(1)) + framed(a_answer(2))
    cut = 2 + len(cname_answer()) - 10
    reader = DnsStreamReader(is_query=False)
    assert reader.feed(stream[:cut], 1) == []
    assert reader.gap(4, 2) == []
    first, second = reader.feed(stream[cut + 4 :], 3)
    assert (first.header.id, first.capture_truncated, len(first.answers)) == (1, True, 2)
    assert (second.header.id, second.capture_truncated) == (2, False)
    assert reader.parse_errors == reader.resyncs == 0


def test_tcp_gap_ending_a_message_loses_the_framing_and_resyncs():
    stream = framed(cname_answer(1)) + b"\x00\x30" + b"?" * 20 + framed(a_answer(2)) + framed(a_answer(3))
    cut = 2 + len(cname_answer()) - 10
    reader = DnsStreamReader(is_query=False)
    assert reader.feed(stream[:cut], 1) == []
    (first,) = reader.gap(10 + 2 + 10, 2)  # the message's end, a length and part of what it framed
    assert (first.header.id, first.capture_truncated) == (1, True)
    assert [m.header.id for m in reader.feed(stream[cut + 22 :], 3)] == [2, 3]
    assert (reader.parse_errors, reader.resyncs) == (0, 1)


def test_tcp_resync_skips_a_false_candidate():
    # Bytes that look like a length and a response header but frame no message.
    decoy = b"\x00\x0c" + header(77, QR_RA, qd=0)[:-2] + b"\xff\xff"
    reader = DnsStreamReader(is_query=False)
    reader.gap(1, 0)
    msgs = reader.feed(b"junk" + decoy + framed(a_answer(4)), 1)
    assert [m.header.id for m in msgs] == [4]
    assert reader.parse_errors == 0


def test_tcp_malformed_message_under_sound_framing_costs_only_itself():
    bad = header(1, QR_RA, an=1) + question("x") + record(pointer(12), A, b"\x01")
    reader = DnsStreamReader(is_query=False)
    assert [m.header.id for m in reader.feed(framed(bad) + framed(a_answer(2)), 1)] == [2]
    assert (reader.parse_errors, reader.resyncs) == (1, 0)


def test_transport_must_be_known():
    with pytest.raises(ValueError):
        DnsTrace(1024, transport="sctp")


# Schema


def test_dns_events_schema_has_the_common_block_then_the_dns_columns():
    dns, http = builtin_schemas()["dns_events"], builtin_schemas()["http_events"]
    common = http.column_names[: http.column_names.index("conn_id") + 1]
    assert dns.column_names == common + ["req_header", "req_body", "resp_header", "resp_body", "latency"]
    assert dns.columns[: len(common)] == http.columns[: len(common)]
    assert "unconnected" in dns.description
