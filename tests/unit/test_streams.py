from tracedb.connectors.socket_tracer.streams import Piece, StreamBuffer


def pieces(buffer: StreamBuffer) -> list[tuple[bytes, int]]:
    return [(p.data, p.gap) for p in buffer.take()]


def test_in_order_events_pass_through():
    buf = StreamBuffer()
    buf.add(100, 3, b"abc", 1)
    buf.add(103, 2, b"de", 2)
    assert buf.take() == [Piece(b"abc", 0, 1), Piece(b"de", 0, 2)]
    assert buf.next_pos == 105


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
