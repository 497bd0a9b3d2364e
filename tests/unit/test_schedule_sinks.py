"""What the sinks write: osquery-style JSON lines, Parquet files per run, store tables."""

import io
import json
import time

import pyarrow.parquet as pq

from tests.unit.helpers import EVENTS
from tracedb.schedule import Scheduler, parse_schedule
from tracedb.storage import QueryEngine, TableStore

START_US = 1_700_000_000_000_000  # 2023-11-14T22:13:20Z
MINUTE_US = 60_000_000


def run_twice(toml: str, **options) -> QueryEngine:
    """Run each query of `toml` for two one-minute windows; `peers` changes in between."""
    engine = QueryEngine(TableStore([EVENTS]))
    engine.query("create table peers as select 'a' as comm, 80 as port")
    scheduler = Scheduler(parse_schedule(toml, "s.toml"), engine, **options)
    for job in scheduler.jobs:
        job.window_start_us = START_US
        job.run(START_US + MINUTE_US)
    engine.query("update peers set port = 8080")
    for job in scheduler.jobs:
        job.run(START_US + 2 * MINUTE_US)
    scheduler.context.close()
    return engine


def test_stdout_lines_carry_name_time_window_and_action():
    out = io.StringIO()
    run_twice('[query.peers]\ninterval = 60\nsql = "select comm, port from peers"\n', stdout=out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(x["counter"], x["action"], x["columns"]) for x in lines] == [
        (0, "added", {"comm": "a", "port": 80}),
        (1, "removed", {"comm": "a", "port": 80}),
        (1, "added", {"comm": "a", "port": 8080}),
    ]
    last = lines[-1]
    assert set(last) == {
        "name", "hostIdentifier", "calendarTime", "unixTime", "counter", "action", "windowStart", "windowEnd", "columns",
    }
    assert last["name"] == "peers" and last["hostIdentifier"]
    assert (last["windowStart"], last["windowEnd"]) == ("2023-11-14T22:14:20+00:00", "2023-11-14T22:15:20+00:00")
    assert last["calendarTime"].endswith(" UTC") and abs(last["unixTime"] - time.time()) < 60, "when it ran"


def test_queries_sharing_a_jsonl_file_append_whole_lines(tmp_path):
    toml = "".join(
        f'[query.{name}]\ninterval = 60\nstyle = "snapshot"\nsink = "jsonl"\npath = "{tmp_path}/results.jsonl"\n'
        f'sql = "select comm, port from peers"\n'
        for name in ("one", "two")
    )
    run_twice(toml)
    lines = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [(x["name"], x["columns"]["port"]) for x in lines] == [("one", 80), ("two", 80), ("one", 8080), ("two", 8080)]


def test_parquet_sink_writes_one_file_per_run_in_date_directories(tmp_path):
    run_twice(f'[query.peers]\ninterval = 60\nstyle = "snapshot"\nsink = "parquet"\npath = "{tmp_path}"\nsql = "select comm, port from peers"\n')
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == [
        "peers/date=2023-11-14/20231114T221420.000000Z-0.parquet",
        "peers/date=2023-11-14/20231114T221520.000000Z-1.parquet",
    ], "no temporary files left behind"
    table = pq.read_table(tmp_path / "peers" / "date=2023-11-14" / "20231114T221520.000000Z-1.parquet")
    assert table.column_names == ["name", "run_time", "window_start", "window_end", "counter", "action", "comm", "port"]
    assert table.select(["action", "port"]).to_pylist() == [{"action": "snapshot", "port": 8080}]


def test_table_sink_rows_are_queryable_like_any_table():
    engine = run_twice('[query.peers]\ninterval = 60\nsink = "table"\ntable = "peer_log"\nsql = "select comm, port from peers"\n')
    rows = engine.query("select name, counter, action, port from peer_log order by counter, action").to_pylist()
    assert [tuple(r.values()) for r in rows] == [
        ("peers", 0, "added", 80),
        ("peers", 1, "added", 8080),
        ("peers", 1, "removed", 80),
    ]
