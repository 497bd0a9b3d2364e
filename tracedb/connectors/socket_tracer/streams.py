"""Reassembly of one direction of a connection from data events (TCP), and
the datagrams of one direction of a UDP socket.

Each data event says where its bytes sit in the stream (`pos`), how many the
syscall moved (`size`) and carries the first `captured` of them. The buffer
hands the parser contiguous bytes in stream order and tells it about holes:
bytes the kernel moved but did not copy (capture limit, sendfile), and events
that never arrived (a full ring buffer). Events of one take are ordered by
position first, so threads that raced on one socket are put back in order.

Events almost always arrive in stream order, each carrying the next bytes,
all captured: the buffer sorts only when an event arrived out of order, and
an event that carries exactly the next bytes becomes one piece without
further checks.
"""

from __future__ import annotations

from operator import itemgetter
from typing import NamedTuple

_POS = itemgetter(0)
_new_tuple = tuple.__new__  # builds a Piece about 3x faster than Piece(...), which goes through Python code


class Piece(NamedTuple):
    """Contiguous captured bytes, or a hole of `gap` bytes (data empty)."""

    data: bytes
    gap: int
    time_ns: int


class StreamBuffer:
    def __init__(self) -> None:
        self.next_pos: int | None = None  # stream offset of the next byte to hand on
        self.bytes_missing = 0
        self._pending: list[tuple[int, int, bytes, int]] = []  # (pos, size, payload, time_ns) as added
        self._last_pos = -1  # pos of the last event added
        self._in_order = True  # no event added since the last take has a lower pos than the one before it

    def add(self, pos: int, size: int, payload: bytes, time_ns: int) -> None:
        if pos < self._last_pos:
            self._in_order = False
        self._last_pos = pos
        self._pending.append((pos, size, payload, time_ns))

    def take(self) -> list[Piece]:
        """Everything added since the last take, in stream order, holes marked."""
        pending, self._pending = self._pending, []
        if not self._in_order:
            pending.sort(key=_POS)  # stable: duplicates keep their order
        self._in_order, self._last_pos = True, -1
        pieces: list[Piece] = []
        next_pos = self.next_pos
        for pos, size, payload, time_ns in pending:
            if next_pos is None:
                next_pos = pos  # the stream is joined where tracing began
            if pos == next_pos and size == len(payload):
                pieces.append(_new_tuple(Piece, (payload, 0, time_ns)))  # the next bytes, all captured
            elif pos + size <= next_pos:
                continue  # already handed on
            else:
                self._add_pieces(pieces, next_pos, pos, size, payload, time_ns)
            next_pos = pos + size
        self.next_pos = next_pos
        return pieces

    def _add_pieces(self, pieces: list[Piece], next_pos: int, pos: int, size: int, payload: bytes,
                    time_ns: int) -> None:
        """The pieces of an event that overlaps what was handed on, follows a
        hole, or was not copied whole."""
        if pos > next_pos:
            pieces.append(Piece(b"", pos - next_pos, time_ns))
            self.bytes_missing += pos - next_pos
        skip = max(0, next_pos - pos)
        if skip < len(payload):
            pieces.append(Piece(payload[skip:], 0, time_ns))
        uncaptured = size - max(len(payload), skip)
        if uncaptured > 0:
            pieces.append(Piece(b"", uncaptured, time_ns))


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
