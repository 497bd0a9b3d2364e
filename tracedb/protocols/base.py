"""What the protocol modules share: timed input for their parsers, and the frame of their traces.

This module owns two pieces that every protocol of tracedb.protocols would
otherwise write again:

- `TimedInput`, a base class for an incremental parser of one direction of a
  stream: the bytes fed but not yet consumed, and for each byte the time of
  the syscall that carried it, so that a message's first and last bytes can
  be stamped however the stream was split; and the step loop those parsers
  run (`_run`, `_goto`, `Malformed`).
- `PairedTrace`, a base class for the socket tracer's view of one connection
  (the `Trace` of tracedb.connectors.socket_tracer.protocols): a request-side
  and a response-side parser, bytes and gaps routed to the side they belong
  to, and the finished rows handed out.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque


class Malformed(Exception):
    """The bytes at a parser's position cannot continue a message of its protocol."""


class TimedInput:
    """The unconsumed input of a parser, and when each byte of it arrived.

    `_buf` holds the bytes fed and not yet dropped; the parser consumes them
    by moving `_pos`. `_scan_from` is where a parser's search for a delimiter
    resumes, an index into `_buf` that `_compact` keeps on the same byte.
    Times are kept per fed chunk, by stream offset, so that dropping bytes
    from the front of `_buf` does not lose them.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0  # first unconsumed byte of _buf
        self._scan_from = 0
        self._base = 0  # stream offset of _buf[0]
        self._chunks: deque[tuple[int, int]] = deque()  # (stream offset, timestamp) of fed chunks

    def _append_input(self, data: bytes, timestamp_ns: int) -> None:
        """The next bytes of the stream, carried by a syscall at timestamp_ns."""
        self._chunks.append((self._base + len(self._buf), timestamp_ns))
        self._buf += data

    def _time_at(self, index: int) -> int:
        """Timestamp of the chunk that carried _buf[index]. Lookups never go
        backwards, so the chunks before that one are forgotten."""
        self._forget_chunks_before(self._base + index)
        return self._chunks[0][1]

    def _forget_chunks_before(self, offset: int) -> None:
        chunks = self._chunks
        while len(chunks) > 1 and chunks[1][0] <= offset:
            chunks.popleft()

    def _discard_input(self) -> None:
        """Drop all buffered input, consumed or not; the stream goes on after it."""
        self._base += len(self._buf)
        self._buf.clear()
        self._pos = self._scan_from = 0
        self._chunks.clear()

    def _skip_input(self, count: int, timestamp_ns: int) -> None:
        """Drop all buffered input and pass over the next count bytes of the
        stream, which were lost in a gap whose syscall returned at
        timestamp_ns: a message that ends among them ends then."""
        self._discard_input()
        self._chunks.append((self._base, timestamp_ns))
        self._base += count

    def _compact(self) -> None:
        """Drop consumed bytes, and the chunks before the one that carried the
        last of them: a message's end is looked up at the byte before _pos,
        which may be that one (an HTTP response read until close)."""
        consumed = self._pos
        if consumed:
            self._forget_chunks_before(self._base + consumed - 1)
            del self._buf[:consumed]
            self._base += consumed
            self._scan_from = max(0, self._scan_from - consumed)
            self._pos = 0


    # The step loop. Parsing is a sequence of steps, one per part of a
    # message; `_step` holds the next one, which consumes what it can and
    # returns whether to run again, or raises Malformed.

    def _run(self, done: list) -> None:
        while True:
            try:
                if not self._step(self, done):
                    return
            except Malformed:
                self._drop_malformed()

    def _goto(self, step) -> None:
        # Steps are kept unbound so that the parser holds no reference cycle.
        self._step = step
        self._scan_from = 0

    def _drop_malformed(self) -> None:
        """Recover from Malformed raised by the current step (each protocol's own rule)."""
        raise NotImplementedError


class PairedTrace(ABC):
    """One connection's two directions in, rows of one table out.

    `requests` parses the request side and `responses` the response side;
    each has `feed(data, time_ns)` and `gap(lost_bytes, time_ns)`, which
    return the messages they complete. A subclass sets `table`, turns those
    messages into rows in `_add` (appending them to `_rows`, or overriding
    `take_rows`), and says what a close does and what counts as a parse error.
    Rows are dicts by column name, or tuples of the columns in `row_fields`
    if the subclass sets it: cheaper to build and to turn into columns, for
    protocols with many rows.
    """

    row_fields: tuple[str, ...] | None = None

    def __init__(self, requests, responses) -> None:
        self.requests = requests
        self.responses = responses
        self._rows: list[dict] | list[tuple] = []

    def on_bytes(self, request_side: bool, data: bytes, time_ns: int) -> None:
        parser = self.requests if request_side else self.responses
        self._add(request_side, parser.feed(data, time_ns))

    def on_gap(self, request_side: bool, lost_bytes: int, time_ns: int) -> None:
        parser = self.requests if request_side else self.responses
        self._add(request_side, parser.gap(lost_bytes, time_ns))

    def take_rows(self) -> list[dict] | list[tuple]:
        rows, self._rows = self._rows, []
        return rows

    @abstractmethod
    def _add(self, request_side: bool, messages: list) -> None:
        """Take the messages one side's parser completed."""

    @abstractmethod
    def on_close(self, time_ns: int) -> None:
        """The connection closed at time_ns."""

    @property
    @abstractmethod
    def parse_errors(self) -> int:
        """Bytes or messages that could not be made sense of, both sides and the pairing."""
