"""The socket tracer's user side without a kernel: raw events as the BPF
program submits them, held by RawRing.hold, decoded in slices
into http_events; budgets and losses."""

from __future__ import annotations

import threading
import time

import pyarrow as pa
import pytest

import tracedb.connectors.socket_tracer.connector as connector_module
from tests.unit.raw_events import CONN_ID, FakeProgram, conn_event, data_event, tracer_with
from tracedb.connectors.bpf import Drainer, RawRing
from tracedb.connectors.socket_tracer.connector import DECODE_SLICE_EVENTS, SocketTracer, _TableColumns
from tracedb.connectors.socket_tracer.events import ConnEventKind, Direction
from tracedb.schema import get_schema

REQUEST = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def exchanges(count: int, start_ns: int = 1_000) -> list[tuple[str, bytes]]:
    """`count` request/response pairs on CONN_ID, as (ring, raw event) in submission order."""
    events = []
    for i in range(count):
        t = start_ns + 10 * i
        events.append(("data_ring", data_event(Direction.RECV, i * len(REQUEST), REQUEST, t)))
        events.append(("data_ring", data_event(Direction.SEND, i * len(RESPONSE), RESPONSE, t + 5)))
    return events


def opened(count: int) -> list[tuple[str, bytes]]:
    return [("conn_ring", conn_event(ConnEventKind.OPEN, 1)), ("conn_ring", conn_event(ConnEventKind.PROTOCOL, 2)),
            *exchanges(count)]


def paths(batch: pa.RecordBatch) -> list[str]:
    return batch.column("req_path").to_pylist()


def test_events_decode_into_http_events_in_slices_with_a_drain_before_each():
    program = FakeProgram()
    tracer = tracer_with(program)
    count = DECODE_SLICE_EVENTS * 2  # four slices of data events
    program.submit(opened(count))
    batches = tracer.flush()
    assert batches["http_events"].num_rows == count
    assert program.drains >= 5
    row = batches["http_events"].slice(0, 1).to_pylist()[0]
    assert (row["pid"], row["local_port"], row["remote_port"], row["trace_role"], row["req_path"]) == (
        42, 80, 40000, "server", "/a")
    assert (row["latency"], row["resp_body"]) == (5, "ok")
    assert tracer.stats.events == 2 + 2 * count
    assert (tracer.stats.events_lost, tracer.stats.decode_errors) == (0, 0)


def test_sampling_ticks_decode_and_the_push_publishes():
    program = FakeProgram()
    tracer = tracer_with(program)
    program.submit(opened(3))
    tracer.sample()
    assert tracer.data_ring.taken == 6
    assert paths(tracer.flush()["http_events"]) == ["/a"] * 3


def test_a_close_waits_for_the_data_drained_with_it():
    """The close arrives with data still undecoded: a response read until the
    close must get all its bytes before the close ends it."""
    program = FakeProgram()
    tracer = tracer_with(program)
    until_close = b"HTTP/1.0 200 OK\r\n\r\n"
    program.submit([*opened(DECODE_SLICE_EVENTS),
                    ("data_ring", data_event(Direction.RECV, DECODE_SLICE_EVENTS * len(REQUEST), REQUEST, 9_000_000)),
                    ("data_ring", data_event(Direction.SEND, DECODE_SLICE_EVENTS * len(RESPONSE), until_close + b"ab",
                                             9_000_001)),
                    ("data_ring", data_event(Direction.SEND, DECODE_SLICE_EVENTS * len(RESPONSE) + 21, b"cd",
                                             9_000_002)),
                    ("conn_ring", conn_event(ConnEventKind.CLOSE, 9_000_003))])
    batch = tracer.flush()["http_events"]
    assert batch.num_rows == DECODE_SLICE_EVENTS + 1
    assert batch.slice(DECODE_SLICE_EVENTS).to_pylist()[0]["resp_body"] == "abcd"
    assert CONN_ID not in tracer.connections
    assert tracer.stats.decode_errors == 0


def test_a_push_decodes_for_a_bounded_time_and_stop_counts_what_is_left(monkeypatch):
    monkeypatch.setattr(connector_module, "FLUSH_DECODE_S", 0.0)  # one slice per push
    program = FakeProgram()
    tracer = tracer_with(program)
    program.submit(opened(DECODE_SLICE_EVENTS * 2))
    assert tracer.flush()["http_events"].num_rows == DECODE_SLICE_EVENTS // 2
    assert tracer.stats.events_waiting == DECODE_SLICE_EVENTS * 3
    first_waiting_ns = 1_000 + 10 * (DECODE_SLICE_EVENTS // 2)  # exchanges(): the request of the next pair
    assert tracer.stats.oldest_waiting_us == (first_waiting_ns + tracer.clock.boot_epoch_ns) // 1000
    assert tracer.flush()["http_events"].num_rows == DECODE_SLICE_EVENTS // 2
    assert tracer.stats.events_waiting == DECODE_SLICE_EVENTS * 2
    assert tracer.stats.events_lost == 0
    tracer.stop()
    assert (tracer.stats.events_waiting, tracer.stats.oldest_waiting_us) == (0, None)
    assert tracer.stats.events_lost == DECODE_SLICE_EVENTS * 2, "the two slices never decoded"
    assert tracer.losses()["left at stop"] == DECODE_SLICE_EVENTS * 2
    assert tracer.program is None


def test_the_backlog_is_bounded_and_drops_whole_events_counted_as_lost():
    exchange_bytes = sum(len(raw) for _, raw in exchanges(1))
    program = FakeProgram()
    program.kernel_lost = 3
    tracer = tracer_with(program, backlog_bytes=5 * exchange_bytes)
    program.submit(opened(8))  # 16 data events
    program.drain()  # all at once: the backlog takes 10, drops 6
    assert (len(tracer.data_ring), tracer.data_ring.dropped) == (10, 6)
    batches = tracer.flush()
    assert batches["http_events"].num_rows == 5
    assert tracer.stats.events_lost == 6 + 3
    assert tracer.losses() == {"data ring full": 3, "connection ring full": 0, "connection table full": 0,
                               "backlog full": 6, "left at stop": 0}


def test_a_storm_of_connections_is_applied_in_slices_before_their_data():
    program = FakeProgram()
    tracer = tracer_with(program)
    count = DECODE_SLICE_EVENTS * 2
    opens = [("conn_ring", conn_event(ConnEventKind.OPEN, 1, conn_id=i)) for i in range(1, count + 1)]
    data = [("data_ring", data_event(Direction.RECV, 0, REQUEST, 2, conn_id=i)) for i in range(1, count + 1)]
    program.submit(opens + data)
    tracer.flush()
    assert program.drains >= 4
    assert len(tracer.connections) == count
    assert (tracer.stats.events, tracer.stats.decode_errors) == (2 * count, 0)


def test_data_of_an_unknown_connection_is_a_decode_error():
    program = FakeProgram()
    tracer = tracer_with(program)
    program.submit(exchanges(1))
    assert tracer.flush()["http_events"].num_rows == 0
    assert tracer.stats.decode_errors == 2


def test_raw_ring_holds_events_oldest_first_within_its_limit():
    ring = RawRing(None, limit_bytes=10)
    ring.hold([b"abcd", b"efgh", b"ijkl", b"mn"])
    assert (len(ring), ring.held_bytes, ring.dropped, ring.added) == (3, 10, 1, 3)
    assert ring.take_raw(2) == [b"abcd", b"efgh"]
    assert (ring.taken, ring.held_bytes) == (2, 2)
    assert ring.take_raw() == [b"mn"]
    assert (len(ring), ring.taken) == (0, 3)


def test_table_columns_match_rows_built_one_by_one(monkeypatch):
    monkeypatch.setattr(connector_module, "ARROW_EVERY_ROWS", 2)  # several batches, concatenated
    clock = SocketTracer().clock
    common = {"upid": "1:2", "pid": 1, "remote_addr": "::1", "remote_port": 5, "local_addr": "::1",
              "local_port": 80, "trace_role": "client", "encrypted": False, "conn_id": 3}
    rows = [{"time_ns": 1_000 * i, "req_method": "GET", "req_path": f"/{i}", "latency": i} for i in range(5)]
    columns = _TableColumns("http_events", clock)
    columns.add([dict(r) for r in rows[:3]], common)
    columns.add([dict(r) for r in rows[3:]], dict(common, conn_id=4))
    batch = columns.take_batch()
    expected = [{**r, **common, "conn_id": 3 if i < 3 else 4, "time_": int(clock.boot_ns_to_epoch_us(r["time_ns"]))}
                for i, r in enumerate(rows)]
    schema = get_schema("http_events").arrow_schema
    assert batch.equals(pa.RecordBatch.from_pylist(expected, schema=schema))
    assert columns.take_batch().num_rows == 0


def test_rows_as_tuples_of_row_fields_match_rows_as_dicts():
    clock = SocketTracer().clock
    common = {"upid": "1:2", "pid": 1, "remote_addr": "::1", "remote_port": 5, "local_addr": "::1",
              "local_port": 80, "trace_role": "server", "encrypted": False, "conn_id": 3}
    fields = ("latency", "time_ns", "req_path")  # any order; columns left out are null
    rows = [(i, 1_000 * i, f"/{i}") for i in range(5)]
    as_tuples, as_dicts = _TableColumns("http_events", clock, fields), _TableColumns("http_events", clock)
    as_tuples.add(rows, common)
    as_dicts.add([dict(zip(fields, row)) for row in rows], common)
    assert as_tuples.take_batch().equals(as_dicts.take_batch())
    assert as_tuples.take_batch().num_rows == 0
    assert connector_module.ROW_FIELDS["http_events"][0] == "time_ns"


@pytest.mark.parametrize("table", connector_module.TABLES)
def test_every_protocol_table_takes_rows_column_by_column(table):
    columns = _TableColumns(table, SocketTracer().clock)
    common = dict.fromkeys(columns.common)
    columns.add([{"time_ns": 1}], common)
    assert columns.take_batch().num_rows == 1


def test_a_ring_held_in_one_thread_and_taken_in_another_gives_every_event_once_in_order():
    ring = RawRing(None)
    sent = [i.to_bytes(4, "little") for i in range(200_000)]

    def hold():
        for start in range(0, len(sent), 100):
            ring.hold(sent[start:start + 100])

    holder = threading.Thread(target=hold)
    holder.start()
    taken = []
    while holder.is_alive() or len(ring):
        taken += ring.take_raw(37)
    holder.join()
    assert taken == sent
    assert (ring.held_bytes, ring.taken, ring.added) == (0, len(sent), len(sent))


class FailingProgram(FakeProgram):
    def drain(self) -> None:
        raise OSError("ring unmapped")


def test_the_drain_thread_drains_on_its_timer_and_hands_its_error_to_the_reader():
    program = FakeProgram()
    tracer = tracer_with(program)
    drainer = Drainer(program, 0.001).start()
    program.submit(opened(2))
    deadline = time.monotonic() + 10
    while len(tracer.data_ring) < 4 and time.monotonic() < deadline:
        time.sleep(0.001)
    drainer.stop()
    assert (len(tracer.conn_ring), len(tracer.data_ring)) == (2, 4)

    failing = Drainer(FailingProgram(), 0.001).start()
    deadline = time.monotonic() + 10
    while failing.error is None and time.monotonic() < deadline:
        time.sleep(0.001)
    with pytest.raises(RuntimeError, match="ring unmapped"):
        failing.check()
    failing.stop()


class OneConnectionPerDrain(FakeProgram):
    """Each drain hands on one connection's four events (open, protocol, request, response)."""

    def drain(self) -> None:
        with self._lock:
            due, self.submitted = self.submitted[:4], self.submitted[4:]
        for ring, raw in due:
            self.rings[ring].hold([raw])


class DrainedJustAfterEachCount(RawRing):
    """A ring another thread drains into right after its length is read: the
    worst moment for a decoder that reads it to decide whether data may go."""

    def __len__(self) -> int:
        count = super().__len__()
        self.drain()
        return count


def test_data_drained_after_its_decoder_looked_for_connection_events_waits_for_them():
    """The decoder takes data only once every connection event held before
    it is applied; a drain thread may hold a new connection and its data
    between the decoder's look at the connection ring and its take of data:
    that data waits for the next slice, and its connection is known then."""
    program = OneConnectionPerDrain()
    tracer = tracer_with(program)
    tracer.conn_ring.__class__ = DrainedJustAfterEachCount
    tracer.conn_ring.drain = program.drain
    connections = 20
    for conn_id in range(1, connections + 1):
        program.submit([("conn_ring", conn_event(ConnEventKind.OPEN, 1, conn_id=conn_id)),
                        ("conn_ring", conn_event(ConnEventKind.PROTOCOL, 2, conn_id=conn_id)),
                        ("data_ring", data_event(Direction.RECV, 0, REQUEST, 3, conn_id=conn_id)),
                        ("data_ring", data_event(Direction.SEND, 0, RESPONSE, 4, conn_id=conn_id))])
    rows = sum(tracer.flush()["http_events"].num_rows for _ in range(connections))
    assert (rows, tracer.stats.decode_errors) == (connections, 0)
