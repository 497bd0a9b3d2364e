"""Reassembly of one direction of a connection from data events (TCP), and
the datagrams of one direction of a UDP socket.

Each data event says where its bytes sit in the stream (`pos`), how many the
syscall moved (`size`) and carries the first `captured` of them. The buffer
hands the parser contiguous bytes in stream order and tells it about holes:
bytes the kernel moved but did not copy (capture limit, sendfile), and events
that never arrived (a full ring buffer). Events of one flush are ordered by
position first, so threads that raced on one socket are put back in order.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Piece:
    """Contiguous captured bytes, or a hole of `gap` bytes (data empty)."""

    data: bytes
    gap: int
    time_ns: int


class StreamBuffer:
    def __init__(self) -> None:
        self.next_pos: int | None = None  # stream offset of the next byte to hand on
        self.bytes_missing = 0
        self._pending: list[tuple[int, int, bytes, int]] = []

    def add(self, pos: int, size: int, payload: bytes, time_ns: int) -> None:
        self._pending.append((pos, size, payload, time_ns))

    def take(self) -> list[Piece]:
        """Everything added since the last take, in stream order, holes marked."""
        pending, self._pending = sorted(self._pending, key=lambda e: e[0]), []
        pieces: list[Piece] = []
        for pos, size, payload, time_ns in pending:
            if self.next_pos is None:
                self.next_pos = pos  # the stream is joined where tracing began
            if pos + size <= self.next_pos:
                continue  # already handed on
            if pos > self.next_pos:
                pieces.append(Piece(b"", pos - self.next_pos, time_ns))
                self.bytes_missing += pos - self.next_pos
            skip = max(0, self.next_pos - pos)
            if skip < len(payload):
                pieces.append(Piece(payload[skip:], 0, time_ns))
            uncaptured = size - max(len(payload), skip)
            if uncaptured > 0:
                pieces.append(Piece(b"", uncaptured, time_ns))
            self.next_pos = pos + size
        return pieces


class DatagramBuffer:
    """One direction of a UDP socket: every event is one whole datagram.

    Datagrams need no reassembly; a datagram the kernel did not copy whole is
    handed on as its captured prefix followed by a hole for the rest, so the
    parser can tell it was cut.
    """

    def __init__(self) -> None:
        self._pending: list[Piece] = []

    def add(self, pos: int, size: int, payload: bytes, time_ns: int) -> None:
        self._pending.append(Piece(payload, 0, time_ns))
        if size > len(payload):
            self._pending.append(Piece(b"", size - len(payload), time_ns))

    def take(self) -> list[Piece]:
        pieces, self._pending = self._pending, []
        return pieces
