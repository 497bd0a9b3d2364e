"""Python mirrors of bpf/socket_tracer/socket_tracer.h and batch decoding.

Connection events are fixed-size and decode with one numpy call. Data events
are a fixed header followed by `captured` payload bytes; their headers are
decoded together, their payloads kept as byte slices.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

BPF_HEADER = "socket_tracer/socket_tracer.h"


class Direction(IntEnum):
    SEND = 1
    RECV = 2


class Role(IntEnum):
    UNKNOWN = 0
    CLIENT = 1
    SERVER = 2


class Protocol(IntEnum):
    UNKNOWN = 0
    HTTP = 1
    PGSQL = 2
    MYSQL = 3
    REDIS = 4
    DNS = 5
    NONE = 255


class Transport(IntEnum):
    TCP = 1
    UDP = 2


class ConnEventKind(IntEnum):
    OPEN = 1
    CLOSE = 2
    PROTOCOL = 3


CONN_ID = np.dtype(
    [
        ("conn_id", "<u8"),
        ("start_boottime_ns", "<u8"),
        ("tgid", "<u4"),
        ("fd", "<u4"),
        ("family", "<u2"),
        ("lport", "<u2"),
        ("rport", "<u2"),
        ("role", "u1"),
        ("origin", "u1"),
        ("laddr", "u1", (16,)),
        ("raddr", "u1", (16,)),
        ("transport", "u1"),
        ("_pad", "u1", (7,)),
    ]
)
CONN_EVENT = np.dtype(
    [
        ("time_ns", "<u8"),
        ("bytes_sent", "<u8"),
        ("bytes_recv", "<u8"),
        ("kind", "u1"),
        ("protocol", "u1"),
        ("_pad", "u1", (6,)),
        ("id", CONN_ID),
    ]
)
DATA_EVENT = np.dtype(
    [
        ("time_ns", "<u8"),
        ("conn_id", "<u8"),
        ("pos", "<u8"),
        ("size", "<u4"),
        ("captured", "<u4"),
        ("tgid", "<u4"),
        ("fd", "<u4"),
        ("direction", "u1"),
        ("protocol", "u1"),
        ("role", "u1"),
        ("syscall", "u1"),
        ("peer_family", "<u2"),
        ("peer_port", "<u2"),
        ("peer_addr", "u1", (16,)),
        ("_pad", "<u4", (2,)),
    ]
)
BPF_STRUCTS = {"conn_id": CONN_ID, "conn_event": CONN_EVENT, "data_event": DATA_EVENT}

AF_INET = 2


@dataclass(frozen=True)
class Endpoint:
    addr: str
    port: int


def endpoint(family: int, raw_addr: np.ndarray | bytes, port: int) -> Endpoint:
    """Text form of an address from the kernel; IPv4-mapped IPv6 shown as IPv4."""
    return Endpoint(_address_text(int(family), bytes(raw_addr)), int(port))


@functools.lru_cache(maxsize=4096)  # a node talks to few addresses, over many connections
def _address_text(family: int, raw_addr: bytes) -> str:
    if family == AF_INET:
        return str(ipaddress.IPv4Address(raw_addr[:4]))
    addr = ipaddress.IPv6Address(raw_addr)
    return str(addr.ipv4_mapped or addr)


def split_data_events(chunks: list[bytes]) -> tuple[np.ndarray, list[bytes]]:
    """Raw data events to (structured array of headers, payload per event)."""
    size = DATA_EVENT.itemsize
    headers = np.frombuffer(b"".join(c[:size] for c in chunks), DATA_EVENT)
    payloads = [c[size:] for c in chunks]
    return headers, payloads
