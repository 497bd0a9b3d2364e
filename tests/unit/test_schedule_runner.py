"""Running schedules: deadlines, differential runs, failures and overruns, over a real QueryEngine."""

import re
import time

import pytest

from tests.unit.helpers import EVENTS, events_batch
from tracedb.schedule import Scheduler, parse_schedule
from tracedb.schedule.runner import Cadence
from tracedb.storage import QueryEngine, TableStore

START_US = 1_700_000_000_000_000
MINUTE_US = 60_000_000


def test_deadlines_come_from_the_start_so_runs_do_not_drift():
    cadence = Cadence(start_mono=100.0, start_us=START_US, interval_s=0.3)
    index = 1
    for _ in range(1000):  # each run starts on time and takes almost a whole interval
        index = cadence.next_index(index, cadence.due(index) + 0.29)
    assert index == 1001
    assert cadence.due(1001) == pytest.approx(100.0 + 1001 * 0.3)
    assert cadence.wall_us(1001) == START_US + 300_300_000


def test_a_run_past_the_next_deadlines_skips_them():
    cadence = Cadence(start_mono=100.0, start_us=START_US, interval_s=10.0)
    assert cadence.next_index(1, now_mono=110.0) == 2, "started and finished at once"
    assert cadence.next_index(1, now_mono=119.99) == 2
    assert cadence.next_index(1, now_mono=135.0) == 4, "still running at 120 and 130: both skipped"
    assert cadence.next_index(5, now_mono=120.0) == 6, "a late wake-up never goes back"


def engine_with(*statements: str) -> QueryEngine:
    engine = QueryEngine(TableStore([EVENTS]))
    for sql in statements:
        engine.query(sql)
    return engine


def single_job(engine: QueryEngine, toml: str, **options):
    scheduler = Scheduler(parse_schedule(toml, "s.toml"), engine, **options)
    job = scheduler.jobs[0]
    job.window_start_us = START_US
    return job


def test_differential_runs_over_changing_data():
    engine = engine_with("create table peers (comm varchar, port int)", "insert into peers values ('a', 80), ('b', 443)")
    job = single_job(engine, '[query.seen]\ninterval = 60\nsink = "table"\nsql = "select comm, port from peers"\n')

    def run(k: int) -> list[tuple]:
        job.run(START_US + k * MINUTE_US)
        rows = engine.query(f"select action, comm, port from seen where counter = {k - 1} order by all")
        return [tuple(r.values()) for r in rows.to_pylist()]

    assert run(1) == [("added", "a", 80), ("added", "b", 443)]
    engine.query("delete from peers where comm = 'b'; insert into peers values ('c', 22), ('a', 80)")
    assert run(2) == [("added", "a", 80), ("added", "c", 22), ("removed", "b", 443)]
    assert run(3) == [], "nothing changed, nothing emitted"
    engine.query("delete from peers where comm = 'a'; insert into peers values ('a', 80)")
    assert run(4) == [("removed", "a", 80)], "two a rows became one"
    assert job.stats.runs == 4 and job.stats.rows_emitted == 6 and job.stats.failures == 0


def test_snapshot_runs_see_their_window_through_parameters():
    engine = engine_with()
    engine.store.append("events", events_batch(0, 180, START_US, step_us=1_000_000))  # one row a second for 3 minutes
    sql = "select count(*) as n, min(seq) as first from events where time_ >= $window_start and time_ < $window_end"
    job = single_job(engine, f'[query.per_minute]\ninterval = "1m"\nstyle = "snapshot"\nsink = "table"\nsql = "{sql}"\n')
    for k in (1, 2, 3):
        job.run(START_US + k * MINUTE_US)
    rows = engine.query(
        "select action, epoch_us(window_start) as ws, epoch_us(window_end) as we, n, first from per_minute order by ws"
    ).to_pylist()
    assert [(r["action"], r["n"], r["first"]) for r in rows] == [("snapshot", 60, 0), ("snapshot", 60, 60), ("snapshot", 60, 120)]
    assert [(r["ws"], r["we"]) for r in rows] == [(START_US + k * MINUTE_US, START_US + (k + 1) * MINUTE_US) for k in range(3)]


def test_a_failed_run_widens_the_next_window_and_keeps_the_differential_base():
    engine = engine_with("create table t as select 1 as x")
    job = single_job(engine, '[query.q]\ninterval = 60\nsink = "table"\nsql = "select x from t"\n')
    job.run(START_US + MINUTE_US)
    engine.query("drop table t")
    job.run(START_US + 2 * MINUTE_US)
    assert job.stats.failures == 1 and "t does not exist" in job.stats.last_error
    engine.query("create table t as select 1 as x union all select 2")
    job.run(START_US + 3 * MINUTE_US)
    rows = engine.query("select counter, action, x, epoch_us(window_start) as ws from q order by counter, x").to_pylist()
    assert rows == [
        {"counter": 0, "action": "added", "x": 1, "ws": START_US},
        {"counter": 1, "action": "added", "x": 2, "ws": START_US + MINUTE_US},
    ]


SCHEDULE = """
[query.ok]
sql = "select count(*) as n from events"
interval = 0.2
style = "snapshot"
sink = "table"

[query.bad_data]
sql = "select cast(path as int) as n from events"
interval = 0.2

[query.dropped]
sql = "select * from scratch"
interval = 0.2
"""


def test_a_failing_query_does_not_stop_the_others_and_is_counted():
    engine = engine_with("create table scratch (x int)")
    engine.store.append("events", events_batch(0, 10, START_US))
    logged = []
    scheduler = Scheduler(parse_schedule(SCHEDULE, "s.toml"), engine, log=logged.append, settle_s=0)
    engine.query("drop table scratch")  # after validation: fails at run time
    with scheduler:
        time.sleep(1.1)
    status = {r["name"]: r for r in engine.query("select * from tracedb_schedule").to_pylist()}
    assert status["ok"]["runs"] >= 3 and status["ok"]["failures"] == 0 and status["ok"]["last_error"] == ""
    for name, error in [("bad_data", "Conversion Error"), ("dropped", "scratch does not exist")]:
        assert status[name]["runs"] >= 3 and status[name]["failures"] == status[name]["runs"], name
        assert error in status[name]["last_error"]
    assert all(r["next_run"] is None for r in status.values()), "stopped"
    assert sum("scheduled query bad_data failed: Conversion Error" in line for line in logged) == status["bad_data"]["runs"]
    assert_on_the_grid(engine, "ok", interval_us=200_000)


def assert_on_the_grid(engine: QueryEngine, table: str, interval_us: int) -> list[dict]:
    """Windows are contiguous, end on start + k * interval, and no run starts before its window ends."""
    rows = engine.query(
        f"select epoch_us(window_start) as ws, epoch_us(window_end) as we, epoch_us(run_time) as rt from {table} order by ws"
    ).to_pylist()
    start = rows[0]["ws"]
    for before, after in zip(rows, rows[1:]):
        assert after["ws"] == before["we"]
    for r in rows:
        assert (r["we"] - start) % interval_us == 0 and r["we"] > r["ws"]
        assert r["rt"] >= r["we"]
    return rows


def test_a_run_still_going_at_the_next_deadline_skips_it_and_is_counted():
    engine = engine_with()
    logged = []
    toml = '[query.slow]\ninterval = 0.2\nstyle = "snapshot"\nsink = "table"\nsql = "select 1 as one"\n'
    scheduler = Scheduler(parse_schedule(toml, "s.toml"), engine, log=logged.append, settle_s=0)
    job = scheduler.jobs[0]
    emit = job.sink.emit

    def slow_first_emit(emission):
        if emission.counter == 0:
            time.sleep(0.5)  # past the deadlines at 0.4 s and 0.6 s
        emit(emission)

    job.sink.emit = slow_first_emit
    with scheduler:
        time.sleep(1.3)
    assert job.stats.overruns >= 2 and job.stats.failures == 0
    assert any(re.fullmatch(r"scheduled query slow overran its 0.2 s interval: \d+ runs skipped", line) for line in logged), logged
    rows = assert_on_the_grid(engine, "slow", interval_us=200_000)
    assert rows[1]["we"] - rows[1]["ws"] >= 3 * 200_000, "the run after the overrun covers the skipped deadlines"
