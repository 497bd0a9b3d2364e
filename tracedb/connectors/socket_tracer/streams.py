"""Reassembly of one direction of a connection from data events (TCP), and
the datagrams of one direction of a UDP socket.

Each data event says where its bytes sit in the stream (`pos`), how many the
syscall moved (`size`) and carries the first `captured` of them. The buffer
hands the parser contiguous bytes in stream order and tells it about holes:
bytes the kernel moved but did not copy (capture limit, sendfile), and events
that never arrived (a full ring buffer). Events of one take are ordered by
position first, so threads that raced on one socket are put back in order.

What a buffer hands on is a list of pieces, each a tuple (pos, size, data,
time_ns): `size` bytes of the stream from `pos`, either captured (`data`
holds them all) or a hole (`data` empty). That is the layout of an event as
added, because events almost always arrive in stream order, each carrying
the next bytes all captured or none of them (sendfile): `add` notes whether
every event since the last take did, and if so `take` hands the events on as
they are, with no work per event.
"""

from __future__ import annotations

from operator import itemgetter

Piece = tuple[int, int, bytes, int]  # (pos, size, data, time_ns): see the module's docstring
_POS = itemgetter(0)


class StreamBuffer:
    def __init__(self) -> None:
        self.next_pos: int | None = None  # stream offset of the next byte to hand on
        self.bytes_missing = 0
        self._pending: list[Piece] = []  # events as added: (pos, size, payload, time_ns)
        self._begin_take()

    def _begin_take(self) -> None:
        self._follows = self.next_pos  # where the next event must start for the events to be pieces as added
        self._as_added = True  # every event added since the last take was a piece: see the module's docstring

    def add(self, pos: int, size: int, payload: bytes, time_ns: int) -> None:
        if pos != self._follows or (payload and size != len(payload)):
            self._as_added = False
        self._follows = pos + size
        self._pending.append((pos, size, payload, time_ns))

    def take(self) -> list[Piece]:
        """Everything added since the last take, in stream order, holes marked."""
        pending, self._pending = self._pending, []
        if not pending:
            return pending
        if self._as_added:
            self.next_pos = self._follows
            return pending
        pending.sort(key=_POS)  # stable: duplicates keep their order
        pieces: list[Piece] = []
        next_pos = pending[0][0] if self.next_pos is None else self.next_pos  # joined where tracing began
        for pos, size, payload, time_ns in pending:
            if pos + size <= next_pos:
                continue  # already handed on
            self._add_pieces(pieces, next_pos, pos, size, payload, time_ns)
            next_pos = pos + size
        self.next_pos = next_pos
        self._begin_take()
        return pieces

    def _add_pieces(self, pieces: list[Piece], next_pos: int, pos: int, size: int, payload: bytes,
                    time_ns: int) -> None:
        """The pieces of an event that brings bytes past next_pos: a hole for
        the bytes missing before it, those it carries, a hole for those it
        moved but did not carry."""
        if pos > next_pos:
            pieces.append((next_pos, pos - next_pos, b"", time_ns))
            self.bytes_missing += pos - next_pos
        skip = max(0, next_pos - pos)
        if skip < len(payload):
            pieces.append((pos + skip, len(payload) - skip, payload[skip:], time_ns))
        carried = max(len(payload), skip)
        if carried < size:
            pieces.append((pos + carried, size - carried, b"", time_ns))


class DatagramBuffer:
    """One direction of a UDP socket: every event is one whole datagram.

    Datagrams need no reassembly; a datagram the kernel did not copy whole is
    handed on as its captured prefix followed by a hole for the rest, so the
    parser can tell it was cut.
    """

    def __init__(self) -> None:
        self._pending: list[Piece] = []

    def add(self, pos: int, size: int, payload: bytes, time_ns: int) -> None:
        self._pending.append((pos, len(payload), payload, time_ns))
        if size > len(payload):
            self._pending.append((pos + len(payload), size - len(payload), b"", time_ns))

    def take(self) -> list[Piece]:
        pieces, self._pending = self._pending, []
        return pieces
