import threading

import pyarrow as pa
import pytest

from tests.unit.helpers import EVENTS, FakeClock, events_batch
from tracedb.storage import Retention, TableStore


def make_store(clock, **retention):
    return TableStore([EVENTS], Retention(**retention), clock_us=clock)


def test_rows_appended_are_read_back_in_order():
    clock = FakeClock()
    store = make_store(clock)
    store.append("events", events_batch(0, 10, clock.now_us))
    store.append("events", events_batch(10, 5, clock.now_us + 100))
    assert store.read("events").column("seq").to_pylist() == list(range(15))


def test_byte_budget_drops_whole_oldest_partitions_and_counts_rows():
    clock = FakeClock()
    one_batch = events_batch(0, 1000, clock.now_us).nbytes
    store = make_store(clock, max_bytes=one_batch * 8)  # seals every half batch: one partition per append
    for i in range(20):
        store.append("events", events_batch(i * 1000, 1000, clock.now_us + i * 1000))
    stats = store.stats().to_pylist()[0]
    assert stats["bytes"] <= one_batch * 8
    assert stats["rows_dropped"] == 20_000 - stats["rows"]
    kept = store.read("events").column("seq").to_pylist()
    assert kept == list(range(20_000 - len(kept), 20_000)), "the newest rows are kept, contiguous"
    assert len(kept) % 1000 == 0, "whole partitions are dropped"


def test_age_limit_drops_partitions_whose_newest_row_is_too_old():
    clock = FakeClock()
    store = make_store(clock, max_age_s=60)
    store.append("events", events_batch(0, 100, clock.now_us))
    clock.now_us += 10 * 1_000_000  # past max_age/16: the next append seals
    store.append("events", events_batch(100, 100, clock.now_us))
    clock.now_us += 55 * 1_000_000  # 65 s after the first rows, 55 s after the second
    store.enforce_retention()
    stats = store.stats().to_pylist()[0]
    assert stats["rows_dropped"] == 100
    assert store.read("events").column("seq").to_pylist() == list(range(100, 200))


def test_batch_with_wrong_schema_is_refused_and_counted():
    store = make_store(FakeClock())
    bad = pa.RecordBatch.from_pydict({"seq": [1]})
    with pytest.raises(ValueError, match="does not match"):
        store.append("events", bad)
    assert store.stats().to_pylist()[0]["batches_rejected"] == 1


def test_unknown_table_is_a_clear_error():
    with pytest.raises(KeyError, match="no table 'nope'"):
        make_store(FakeClock()).append("nope", events_batch(0, 1, 0))


def test_snapshot_does_not_change_while_another_thread_appends():
    clock = FakeClock()
    store = make_store(clock, max_bytes=1 << 20)
    store.append("events", events_batch(0, 100, clock.now_us))
    done = threading.Event()

    def writer():
        seq = 100
        while not done.is_set():
            store.append("events", events_batch(seq, 100, clock.now_us + seq))
            seq += 100

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(200):
            snap = store.snapshot()["events"]
            first = snap.to_arrow()
            seqs = first.column("seq").to_pylist()
            # contiguous: never a half-applied append or a gap from a concurrent drop
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
            assert snap.to_arrow().equals(first)
    finally:
        done.set()
        thread.join()


def test_a_table_that_stops_receiving_rows_still_ages_out():
    clock = FakeClock()
    store = make_store(clock, max_age_s=60)
    store.append("events", events_batch(0, 100, clock.now_us))
    clock.now_us += 61 * 1_000_000
    store.enforce_retention()
    assert store.stats().to_pylist()[0]["rows"] == 0
