"""Schedule files: what is accepted, and bad files refused at start with line and reason."""

from importlib import resources

import pyarrow as pa
import pytest

from tests.unit.helpers import EVENTS
from tracedb.connectors.registry import connectors
from tracedb.schedule import ScheduleError, Scheduler, load_schedule, parse_schedule
from tracedb.schema import get_schema
from tracedb.storage import QueryEngine, TableStore

GOOD = """\
# a comment
[query.recent]
sql = '''
select path, count(*) as n
from events
where time_ >= $window_start and time_ < $window_end
group by path; -- per path
'''
interval = "5m"
style = "snapshot"
sink = "jsonl"
path = "out/results.jsonl"

[query.paths]
sql = "select distinct path from events"
interval = 30
sink = "table"
"""


def error_of(text: str) -> str:
    with pytest.raises(ScheduleError) as info:
        parse_schedule(text, "s.toml")
    return str(info.value)


def events_engine() -> QueryEngine:
    return QueryEngine(TableStore([EVENTS]))


def test_a_good_file_gives_queries_with_defaults_and_resolved_paths(tmp_path):
    schedule = parse_schedule(GOOD, "s.toml", base_dir=tmp_path)
    recent, paths = schedule.queries
    assert (recent.name, recent.interval_s, recent.style, recent.sink) == ("recent", 300, "snapshot", "jsonl")
    assert recent.path == tmp_path / "out/results.jsonl" and recent.table is None
    assert recent.parameters == {"window_start", "window_end"}
    assert recent.sql.rstrip().endswith("group by path"), "the trailing ';' and comment are cut"
    assert (paths.interval_s, paths.style, paths.sink, paths.table) == (30, "differential", "table", "paths")
    assert recent.where.lines == {None: 2, "sql": 3, "interval": 9, "style": 10, "sink": 11, "path": 12}


@pytest.mark.parametrize(
    "change, line, reason",
    [
        (('interval = "5m"', 'interval = "5m'), 9, "not valid TOML"),
        (('sink = "jsonl"', 'sink = "kafka"'), 11, "unknown sink 'kafka' (known: stdout, jsonl, parquet, table)"),
        (('style = "snapshot"', 'style = "sometimes"'), 10, "unknown style 'sometimes'"),
        (('interval = "5m"', 'interval = "5 parsecs"'), 9, "`interval` must be a positive number of seconds"),
        (('interval = "5m"', "interval = 0"), 9, "not 0"),
        (('interval = "5m"', "interval = -10"), 9, "not -10"),
        (('interval = "5m"', 'interval = "-1m"'), 9, "not '-1m'"),
        (('interval = "5m"', "interval = true"), 9, "`interval` is missing"),
        (('interval = "5m"', ""), 2, "`interval` is missing"),
        (("select path, count(*)", "selec path, count(*)"), 3, 'the SQL does not parse: Parser Error: syntax error at or near "selec"'),
        (("group by path;", "group by path; select 1;"), 3, "`sql` must be one statement, not 2"),
        (("select distinct path from events", "delete from events"), 15, "`sql` must be a SELECT (this is DELETE)"),
        (("$window_end\n", "$window_stop\n"), 3, "unknown parameter $window_stop"),
        (('path = "out/results.jsonl"', 'path = "out/results.jsonl"\ncolour = "red"'), 13, "unknown key 'colour'"),
        (('path = "out/results.jsonl"', ""), 2, "the jsonl sink needs a `path`"),
        (('sink = "table"', 'sink = "table"\npath = "x"'), 18, "`path` is an option of the jsonl and parquet sinks, not of table"),
        (('sink = "table"', 'sink = "table"\ntable = "my table"'), 18, "is not a plain SQL identifier"),
        (("[query.paths]", '[query."my paths"]'), 14, "a query name may hold only letters"),
    ],
)
def test_bad_files_are_refused_with_line_and_reason(change, line, reason):
    old, new = change
    assert old in GOOD
    message = error_of(GOOD.replace(old, new, 1))
    assert message.startswith(f"s.toml:{line}: "), message
    assert reason in message


def test_a_file_without_queries_is_refused():
    assert "no queries" in error_of("# nothing yet\n")
    assert "unknown top-level keys ['interval']" in error_of('interval = 5\n[query.a]\nsql = "select 1"\ninterval = 5\n')


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(ScheduleError, match="cannot read the schedule"):
        load_schedule(tmp_path / "nope.toml")


def test_unknown_tables_and_columns_are_refused_at_start_without_running():
    engine = events_engine()
    unknown_table = parse_schedule('[query.a]\ninterval = 1\nsql = "select * from nosuch"\n', "s.toml")
    with pytest.raises(ScheduleError, match=r"s.toml:3: query a: Catalog Error: .*nosuch does not exist"):
        Scheduler(unknown_table, engine)
    unknown_column = parse_schedule('[query.a]\ninterval = 1\nsql = "select nosuch from events"\n', "s.toml")
    with pytest.raises(ScheduleError, match=r"s.toml:3: query a: Binder Error: .*nosuch"):
        Scheduler(unknown_column, engine)


def test_a_table_whose_connector_does_not_run_is_refused_with_a_hint():
    schedule = parse_schedule('[query.a]\ninterval = 1\nsql = "select * from http_events"\n', "s.toml")
    with pytest.raises(ScheduleError, match="comes from the socket_tracer connector, which is not running: see --sources"):
        Scheduler(schedule, events_engine())


def test_sink_tables_are_checked_at_start():
    engine = events_engine()
    clash = parse_schedule('[query.a]\ninterval = 1\nsink = "table"\nsql = "select path as name from events"\n', "s.toml")
    with pytest.raises(ScheduleError, match="s.toml:4: query a: result column 'name' has the name of a column the sink adds"):
        Scheduler(clash, engine)
    taken = parse_schedule('[query.a]\ninterval = 1\nsink = "table"\ntable = "events"\nsql = "select 1 as x"\n', "s.toml")
    with pytest.raises(ScheduleError, match="s.toml:4: query a: a table or view named 'events' exists already"):
        Scheduler(taken, engine)


def test_a_query_may_read_the_table_sink_of_a_query_above_it():
    text = (
        '[query.paths]\ninterval = 1\nsink = "table"\nsql = "select distinct path from events"\n'
        '[query.churn]\ninterval = 1\nsql = "select action, count(*) as n from paths group by action"\n'
    )
    engine = events_engine()
    Scheduler(parse_schedule(text, "s.toml"), engine)
    columns = engine.query("select * from paths").column_names
    assert columns == ["name", "run_time", "window_start", "window_end", "counter", "action", "path"]


def test_an_unwritable_path_is_refused_at_start(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    schedule = parse_schedule(f'[query.a]\ninterval = 1\nsink = "jsonl"\npath = "{blocker}/x.jsonl"\nsql = "select 1"\n', "s.toml")
    with pytest.raises(ScheduleError, match="s.toml:4: query a: cannot open"):
        Scheduler(schedule, events_engine())


def example_scheduler() -> Scheduler:
    tables = [table for cls in connectors().values() for table in cls.tables]
    engine = QueryEngine(TableStore([get_schema(t) for t in tables]))
    example = resources.files("tracedb.examples").joinpath("schedule.toml")
    return Scheduler(parse_schedule(example.read_text(), "schedule.toml"), engine)


def test_the_example_schedule_validates_against_the_real_tables():
    scheduler = example_scheduler()
    jobs, engine = scheduler.jobs, scheduler.context.engine
    assert {job.query.name for job in jobs} >= {
        "top_cpu", "http_latency", "http_status", "connections_per_remote", "killed_by_signal",
    }
    assert engine.query("select * from http_latency").column_names[-3:] == ["p50_ms", "p99_ms", "max_ms"]
    assert engine.query("select count(*) as n from tracedb_schedule").to_pylist() == [{"n": len(scheduler.jobs)}]


def test_the_example_http_summaries_compute_quantiles_and_shares():
    scheduler = example_scheduler()
    engine = scheduler.context.engine
    start_us = 1_700_000_000_000_000
    requests = [("GET", "/a?id=1", 200, ms) for ms in range(1, 101)] + [("POST", "/b", 503, 7)] * 4 + [("GET", "/c", 404, 1)] * 6
    rows = [
        {"time_": start_us + i, "req_method": m, "req_path": p, "resp_status": s, "latency": ms * 1_000_000}
        for i, (m, p, s, ms) in enumerate(requests)
    ]
    engine.store.append("http_events", pa.Table.from_pylist(rows, schema=get_schema("http_events").arrow_schema))
    for job in scheduler.jobs:
        job.window_start_us = start_us
        job.run(start_us + 60_000_000)
    latency = engine.query("select req_method, endpoint, requests, p50_ms, p99_ms, max_ms from http_latency").to_pylist()
    assert latency[0] == {"req_method": "GET", "endpoint": "/a", "requests": 100, "p50_ms": 50.5, "p99_ms": 99.01, "max_ms": 100.0}
    status = engine.query("select status_class, responses, share from http_status order by status_class").to_pylist()
    assert status == [
        {"status_class": "2xx", "responses": 100, "share": 0.9091},
        {"status_class": "4xx", "responses": 6, "share": 0.0545},
        {"status_class": "5xx", "responses": 4, "share": 0.0364},
    ]
