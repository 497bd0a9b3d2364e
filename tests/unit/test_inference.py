"""The kernel's protocol inference rules (bpf/socket_tracer/inference.h),
compiled with gcc and run over a corpus: first messages of every supported
protocol must be recognised as theirs, and other protocols' messages and
random bytes as nothing (no false positives among the protocols)."""

from __future__ import annotations

import random
import shutil
import struct
import subprocess

import pytest

from tests.conftest import require
from tracedb.connectors.bpf import bpf_source_dir
from tracedb.connectors.socket_tracer.events import Protocol, Transport

HARNESS = r"""
#include <stdio.h>
#include <string.h>
#include "inference.h"
/* stdin: lines "<hex of the message> <transport>"; stdout: "<protocol> <request>" */
int main(void) {
    static char hex[1 << 16];
    unsigned transport;
    while (scanf("%65535s %u", hex, &transport) == 2) {
        __u8 head[INFER_HEAD] = {0};
        size_t size = strlen(hex) / 2;
        for (size_t i = 0; i < size && i < INFER_HEAD; i++)
            sscanf(hex + 2 * i, "%2hhx", &head[i]);
        int request = 0;
        __u32 len = size < INFER_HEAD ? size : INFER_HEAD;
        __u8 protocol = infer(head, len, size, transport, &request);
        printf("%u %d\n", protocol, request);
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def infer(tmp_path_factory):
    require(shutil.which("gcc") is not None, "gcc is needed to build the inference harness")
    tmp = tmp_path_factory.mktemp("inference")
    (tmp / "harness.c").write_text(HARNESS)
    subprocess.run(["gcc", "-O1", f"-I{bpf_source_dir('socket_tracer')}", "-o", tmp / "harness", tmp / "harness.c"], check=True)

    def run(samples: list[tuple[bytes, Transport]]) -> list[tuple[Protocol, bool]]:
        text = "".join(f"{data.hex() or '00'} {int(t)}\n" for data, t in samples)
        out = subprocess.run([tmp / "harness"], input=text, capture_output=True, text=True, check=True).stdout
        return [(Protocol(int(p)), r == "1") for p, r in (line.split() for line in out.splitlines())]

    return run


def pg_message(tag: bytes, payload: bytes) -> bytes:
    return tag + struct.pack("!I", len(payload) + 4) + payload


def mysql_packet(payload: bytes, seq: int = 0) -> bytes:
    return struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload


def resp_command(*words: bytes) -> bytes:
    return b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words)


def dns_query(name: str = "example.com", qtype: int = 1, edns: bool = False) -> bytes:
    header = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 1 if edns else 0)
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack("!HH", qtype, 1)
    opt = b"\0" + struct.pack("!HHIH", 41, 1232, 0, 0) if edns else b""
    return header + question + opt


STARTUP = struct.pack("!II", 0, 196608) + b"user\0postgres\0database\0db\0\0"
STARTUP = struct.pack("!I", len(STARTUP)) + STARTUP[4:]
MYSQL_GREETING = mysql_packet(b"\x0a8.0.36\0" + b"\x01\0\0\0" + b"abcdefgh\0" + b"\xff\xf7\x21\x02\0" + b"\0" * 13)

TCP, UDP = Transport.TCP, Transport.UDP
RECOGNISED = [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", TCP, Protocol.HTTP, True),
    (b"POST /api HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", TCP, Protocol.HTTP, True),
    (b"DELETE /x HTTP/1.0\r\n\r\n", TCP, Protocol.HTTP, True),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", TCP, Protocol.HTTP, False),
    (STARTUP, TCP, Protocol.PGSQL, True),
    (struct.pack("!II", 8, 80877103), TCP, Protocol.PGSQL, True),  # SSLRequest
    (struct.pack("!II", 8, 80877104), TCP, Protocol.PGSQL, True),  # GSSENCRequest
    (pg_message(b"Q", b"select 1\0"), TCP, Protocol.PGSQL, True),
    (MYSQL_GREETING, TCP, Protocol.MYSQL, False),
    (mysql_packet(b"\x03select @@version_comment limit 1"), TCP, Protocol.MYSQL, True),
    (mysql_packet(b"\x16select ? + ?"), TCP, Protocol.MYSQL, True),
    (resp_command(b"PING"), TCP, Protocol.REDIS, True),
    (resp_command(b"SET", b"key", b"value"), TCP, Protocol.REDIS, True),
    (resp_command(b"CLIENT", b"SETNAME", b"x" * 20), TCP, Protocol.REDIS, True),
    (resp_command(*[b"k%d" % i for i in range(12)]), TCP, Protocol.REDIS, True),
    (dns_query(), UDP, Protocol.DNS, True),
    (dns_query("a.very.long.name.example.org", 28, edns=True), UDP, Protocol.DNS, True),
    (struct.pack("!H", len(dns_query())) + dns_query(), TCP, Protocol.DNS, True),
    (dns_query(), TCP, Protocol.DNS, True),  # read after its length prefix
]

OTHER_PROTOCOLS = [
    bytes.fromhex("160301020001") + bytes(range(64)),  # TLS ClientHello
    b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n",
    b"EHLO mail.example.com\r\n",
    b"get some_key\r\n",  # memcached text
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",  # HTTP/2 preface
    b'{"jsonrpc":"2.0","method":"x"}',
    b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
    b"+OK\r\n",  # a Redis reply is not a first message
    pg_message(b"R", struct.pack("!I", 0)),  # PostgreSQL AuthenticationOk (server side)
    mysql_packet(b"\x00\x00\x00\x02\x00\x00\x00", seq=2),  # a MySQL OK packet
    b"GETX / HTTP/1.1\r\n\r\n",
]


def test_first_messages_are_recognised_with_their_side(infer):
    got = infer([(data, transport) for data, transport, _, _ in RECOGNISED])
    assert got == [(protocol, request) for _, _, protocol, request in RECOGNISED]


def test_messages_of_other_protocols_are_not_recognised(infer):
    samples = [(data, t) for data in OTHER_PROTOCOLS for t in (TCP, UDP)]
    # TCP-only protocols on a UDP socket
    samples += [(data, UDP) for data, t, p, _ in RECOGNISED if t == TCP and p != Protocol.DNS]
    assert {p for p, _ in infer(samples)} == {Protocol.UNKNOWN}


def test_truncated_first_messages_are_not_recognised(infer):
    """A message cut short cannot satisfy the length checks: no guess from half a header."""
    samples = [(data[:5], t) for data, t, p, _ in RECOGNISED if p in (Protocol.PGSQL, Protocol.MYSQL)]
    assert {p for p, _ in infer(samples)} == {Protocol.UNKNOWN}


def test_random_bytes_are_never_a_protocol(infer):
    rng = random.Random(1234)
    samples = []
    for _ in range(20_000):
        size = rng.choice([4, 9, 16, 17, 40, 300, 1500])
        samples.append((rng.randbytes(size), rng.choice([TCP, UDP])))
    hits = [(s, p) for s, (p, _) in zip(samples, infer(samples)) if p != Protocol.UNKNOWN]
    assert hits == []
