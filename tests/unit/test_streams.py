import random

import pytest

from tracedb.connectors.socket_tracer.streams import DatagramBuffer, StreamBuffer


def pieces(buffer: StreamBuffer) -> list[tuple[bytes, int]]:
    """(data, 0) for captured bytes, (b"", size) for a hole."""
    return [(data, 0 if data else size) for _, size, data, _ in buffer.take()]


def test_in_order_events_pass_through():
    buf = StreamBuffer()
    buf.add(100, 3, b"abc", 1)
    buf.add(103, 2, b"de", 2)
    assert buf.take() == [(100, 3, b"abc", 1), (103, 2, b"de", 2)]
    assert buf.next_pos == 105
    events = [(105, 4, b"fghi", 3), (109, 1000, b"", 4), (1109, 2, b"jk", 5)]  # a hole of 1000: sendfile()
    for event in events:
        buf.add(*event)
    assert buf.take() == events
    assert (buf.next_pos, buf.bytes_missing) == (1111, 0)


@pytest.mark.parametrize("seed", range(20))
def test_events_handed_on_as_added_agree_with_reassembly(seed):
    """Whole events in order, captured or not at all, skip the reassembly
    loop; taking them through it gives the same pieces."""
    rng = random.Random(seed)
    shortcut, reassembly = StreamBuffer(), StreamBuffer()
    pos = rng.randrange(1000)
    for take in range(10):
        for _ in range(rng.randrange(4)):
            size = rng.randrange(1, 50)
            payload = b"" if rng.random() < 0.3 else bytes(rng.randrange(256) for _ in range(size))
            for buf in (shortcut, reassembly):
                buf.add(pos, size, payload, take)
            pos += size
        reassembly._as_added = False
        assert shortcut.take() == reassembly.take()
        assert shortcut.next_pos == reassembly.next_pos


def test_events_of_one_take_are_put_in_stream_order():
    buf = StreamBuffer()
    buf.add(3, 2, b"de", 2)
    buf.add(0, 3, b"abc", 1)
    assert pieces(buf) == [(b"abc", 0), (b"de", 0)]


def test_uncaptured_bytes_become_a_gap():
    buf = StreamBuffer()
    buf.add(0, 10, b"abcd", 1)  # the kernel copied 4 of 10 bytes
    buf.add(10, 2, b"xy", 2)
    assert pieces(buf) == [(b"abcd", 0), (b"", 6), (b"xy", 0)]
    assert buf.bytes_missing == 0


def test_missing_events_become_a_gap_and_are_counted():
    buf = StreamBuffer()
    buf.add(0, 2, b"ab", 1)
    assert pieces(buf) == [(b"ab", 0)]
    buf.add(7, 1, b"z", 3)  # bytes 2..6 never arrived
    assert pieces(buf) == [(b"", 5), (b"z", 0)]
    assert buf.bytes_missing == 5


def test_overlaps_and_duplicates_are_not_handed_on_twice():
    buf = StreamBuffer()
    buf.add(0, 4, b"abcd", 1)
    assert pieces(buf) == [(b"abcd", 0)]
    buf.add(0, 4, b"abcd", 1)
    buf.add(2, 4, b"cdef", 2)
    assert pieces(buf) == [(b"ef", 0)]


def test_a_stream_joined_late_starts_where_tracing_began():
    buf = StreamBuffer()
    buf.add(5000, 3, b"GET", 1)
    assert pieces(buf) == [(b"GET", 0)]


def test_out_of_order_partial_and_missing_events_in_one_take():
    buf = StreamBuffer()
    buf.add(0, 2, b"ab", 1)
    assert pieces(buf) == [(b"ab", 0)]
    buf.add(9, 2, b"jk", 4)  # ahead of bytes 2..8, 2..4 of which never arrive
    buf.add(5, 4, b"fg", 3)  # 2 of 4 bytes copied
    assert pieces(buf) == [(b"", 3), (b"fg", 0), (b"", 2), (b"jk", 0)]
    assert (buf.next_pos, buf.bytes_missing) == (11, 3)


def test_a_datagram_not_copied_whole_is_its_prefix_and_a_hole():
    buf = DatagramBuffer()
    buf.add(0, 10, b"abcd", 1)
    buf.add(0, 2, b"xy", 2)
    assert buf.take() == [(0, 4, b"abcd", 1), (4, 6, b"", 1), (0, 2, b"xy", 2)]
    assert buf.take() == []
