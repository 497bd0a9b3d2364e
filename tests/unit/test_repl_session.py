"""The REPL without a terminal: Session.handle_line over a real store and engine."""

import json
import subprocess
import sys
import threading
import time

import pyarrow as pa
import pytest

from tracedb import Collector
from tracedb.repl import commands
from tracedb.repl.catalog import load_catalog
from tracedb.repl.completion import complete
from tracedb.repl.session import WIDE_NOTE, Session
from tracedb.schema import parse_schema
from tracedb.storage import QueryEngine, TableStore

REQUESTS = parse_schema(
    """
name = "requests"
description = "Test requests. With a second sentence."
[[columns]]
name = "time_"
type = "time"
description = "when"
[[columns]]
name = "path"
type = "string"
semantic = "path"
description = "the path asked for"
[[columns]]
name = "latency"
type = "int64"
unit = "ns"
description = "time to answer"
[[columns]]
name = "resp_bytes"
type = "int64"
unit = "bytes"
description = "response size"
"""
)


class StoreSource:
    """A query source over a store holding `requests`, without a collector."""

    def __init__(self):
        self.store = TableStore([REQUESTS])
        now_us = time.time_ns() // 1000
        rows = {"time_": [now_us] * 3, "path": ["/a", "/b", "/c"], "latency": [1_500_000, 2_000, 3_000_000_000], "resp_bytes": [12_288, 10, 5 << 20]}
        self.store.append("requests", pa.RecordBatch.from_pydict(rows, schema=REQUESTS.arrow_schema))
        self.engine = QueryEngine(self.store)

    def query(self, sql):
        return self.engine.query(sql)

    def interrupt(self):
        self.engine.interrupt()

    def table_schemas(self):
        return {"requests": REQUESTS}

    def status(self):
        return None


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(StoreSource())  # DuckDB takes a while to list its functions: once per module


@pytest.fixture
def session(catalog):
    s = Session(StoreSource(), terminal_width=lambda: 200)
    s.catalog = catalog
    yield s
    s.close()


def run(session, *lines):
    return "".join(session.handle_line(line) for line in lines)


# -- input --------------------------------------------------------------------


def test_a_statement_runs_once_a_line_ends_it_with_a_semicolon(session):
    assert session.handle_line("select count(*) as n") == ""
    assert not session.is_complete("select count(*) as n\nfrom requests")
    shown = session.handle_line("from requests;")
    assert "| 3 |" in shown and "(1 row)" in shown


def test_semicolons_in_strings_and_comments_end_nothing(session):
    assert session.handle_line("select 'a;b' as s -- ;") == ""
    assert "a;b" in session.handle_line(";")
    assert session.is_complete("select 1; -- done") and session.is_complete(".mode csv") and session.is_complete("")


def test_several_statements_on_one_line_all_run(session):
    shown = session.handle_line("select 1 as one; select 2 as two;")
    assert "one" in shown and "two" in shown


def test_an_error_comes_back_as_text_and_the_next_statement_runs(session):
    shown = session.handle_line("select * from nope;")
    assert shown.startswith("Error: ") and "nope" in shown
    assert "| 3 |" in session.handle_line("select count(*) as n from requests;")
    assert session.errors == 1


def test_cancel_interrupts_a_running_statement_and_the_next_one_runs(session):
    threading.Timer(0.5, session.cancel).start()
    started = time.monotonic()
    assert session.handle_line("select count(*) from range(100000000000) t(i) where hash(i) % 7 = 0;") == "Cancelled.\n"
    assert time.monotonic() - started < 10
    assert "| 3 |" in session.handle_line("select count(*) as n from requests;")


# -- results ------------------------------------------------------------------


def test_table_mode_shows_units_readably_and_csv_keeps_raw_values(session):
    table = session.handle_line("select path, latency, resp_bytes from requests order by path;")
    assert "1.5 ms" in table and "12 KiB" in table and "5 MiB" in table and "3 s" in table
    assert "|  1.5 ms |" in table and "|    2 µs |" in table, "humanised numbers stay right-aligned"
    session.handle_line(".mode csv")
    csv = session.handle_line("select path, latency, resp_bytes from requests order by path;")
    assert csv.splitlines() == ["path,latency,resp_bytes", "/a,1500000,12288", "/b,2000,10", "/c,3000000000,5242880"]


def test_derived_columns_keep_the_unit_by_name_or_suffix(session):
    shown = session.handle_line("select max(latency) as latency, 2048 as total_bytes, 7 as n from requests;")
    assert "3 s" in shown and "2 KiB" in shown and "| 7 |" in shown


@pytest.mark.parametrize(
    "mode, check",
    [
        ("json", lambda text: json.loads(text) == [{"path": "/a", "latency": 1500000}]),
        ("jsonl", lambda text: json.loads(text.splitlines()[0])["latency"] == 1500000),
        ("markdown", lambda text: text.startswith("| path | latency |\n|---|---:|\n| /a | 1.5 ms |")),
        ("line", lambda text: "   path = /a\nlatency = 1.5 ms\n" in text and "(1 row)" in text),
    ],
)
def test_modes(session, mode, check):
    assert session.handle_line(f".mode {mode}") == ""
    assert check(session.handle_line("select path, latency from requests where path = '/a';"))


def test_unknown_mode_is_refused_with_the_usage(session):
    shown = session.handle_line(".mode xml")
    assert shown.startswith("Error: unknown mode 'xml'") and "table|line|markdown|csv|json|jsonl" in shown
    assert session.mode == "table"


def test_maxrows_cuts_results_short_and_says_so(session):
    assert session.handle_line(".maxrows 2") == "maxrows: 2\n"
    shown = session.handle_line("select * from range(5);")
    assert "(5 rows, first 2 shown)" in shown and "|     2 |" not in shown
    session.handle_line(".maxrows 0")
    assert "(5 rows)" in session.handle_line("select * from range(5);")
    assert session.handle_line(".maxrows lots").startswith("Error: not a row count")


def test_results_wider_than_the_terminal_show_one_record_per_block():
    narrow = Session(StoreSource(), terminal_width=lambda: 20)
    shown = narrow.handle_line("select path, latency, resp_bytes from requests where path = '/a';")
    assert "resp_bytes = 12 KiB" in shown and shown.endswith(WIDE_NOTE)


def test_timer(session):
    assert session.handle_line(".timer on") == "timer: on\n"
    assert "Time: " in session.handle_line("select 1;")
    session.handle_line("\\timing")
    assert "Time: " not in session.handle_line("select 1;")


# -- where results go -------------------------------------------------------------


def test_output_sends_results_to_a_file_until_reset(session, tmp_path):
    target = tmp_path / "out.txt"
    assert run(session, f".output {target}", "select 41 as a;", "select 42 as b;") == ""
    assert session.handle_line("select * from nope;").startswith("Error:"), "errors still come to the screen"
    session.handle_line(".output")
    assert "| 43 |" in session.handle_line("select 43 as c;")
    written = target.read_text()
    assert "| 41 |" in written and "| 42 |" in written and "43" not in written


def test_once_sends_only_the_next_result_to_a_file(session, tmp_path):
    target = tmp_path / "once.csv"
    run(session, ".mode csv", f".once {target}")
    assert session.handle_line("select 1 as a;") == ""
    assert "2" in session.handle_line("select 2 as b;")
    assert target.read_text() == "a\n1\n"


def test_read_runs_a_files_statements_and_commands(session, tmp_path):
    script = tmp_path / "script.sql"
    script.write_text(".mode csv\nselect path\n  from requests\n  order by path;\n-- the last one has no ;\nselect 7 as seven\n")
    assert session.handle_line(f".read {script}") == "path\n/a\n/b\n/c\nseven\n7\n"
    assert session.handle_line(f".read {tmp_path / 'missing.sql'}").startswith("Error: ")


# -- meta commands ----------------------------------------------------------------


def test_help_lists_every_registered_command(session):
    shown = session.handle_line(".help")
    for command in commands.registered():
        assert command.synopsis in shown and command.summary in shown
    assert "\\dt" in shown and "\\q" in shown


def test_tables_lists_row_counts_and_descriptions(session):
    shown = session.handle_line(".tables")
    requests = next(line for line in shown.splitlines() if line.startswith("| requests "))
    assert requests.endswith("|    3 | Test requests |")
    assert "tracedb_tables" in shown


def test_schema_shows_units_and_descriptions(session):
    shown = session.handle_line(".schema requests")
    assert "latency    | int64  | ns    | time to answer" in shown
    assert session.handle_line("\\d nope").startswith("Error: no table 'nope'")


def test_tables_users_create_appear_in_the_catalog_and_completion(session):
    assert session.handle_line("create view slow as select path, latency as slow_ns from requests;") == "OK\n"
    assert session.catalog.columns("slow") == ("path", "slow_ns")
    assert complete("select * from slow where slo", session.catalog).texts[0] == "slow_ns"
    assert "| slow " in session.handle_line(".tables")
    assert "slow_ns | BIGINT" in session.handle_line(".schema slow")


def test_unknown_commands_and_no_collector_are_said(session):
    assert session.handle_line(".frobnicate").startswith("Error: unknown command .frobnicate")
    assert session.handle_line(".sources").startswith("No collector")
    assert session.handle_line(".export /nowhere").startswith("Error: no collector")


@pytest.mark.parametrize("line", [".quit", "\\q", "quit", "exit;"])
def test_quit(session, line):
    assert session.handle_line(line) == ""
    assert session.finished


# -- over a live collector -----------------------------------------------------------


def test_over_a_collector_results_errors_sources_and_quit():
    with Collector(sources=["procfs"]) as collector:
        session = Session(collector)
        session.refresh_catalog()
        assert "|   2 |" in session.handle_line("select 1 + 1 as two;")
        assert session.handle_line("select * from nope;").startswith("Error: ")
        assert session.handle_line("   ") == ""
        assert "| procfs    | running |" in session.handle_line(".sources")
        assert "process_stats" in session.catalog.tables and "cpu_utime_ns" in session.catalog.columns("process_stats")
        session.handle_line("quit;")
        assert session.finished


# -- batch use ------------------------------------------------------------------------


def tracedb(*args, stdin):
    return subprocess.run([sys.executable, "-m", "tracedb", *args], input=stdin, capture_output=True, text=True, timeout=60)


def test_query_reads_statements_from_stdin():
    sql = "select 1 as a;\nselect 'x;y' as b -- ;\n;\nselect count(*) > 0 as seen from processes"
    result = tracedb("query", "--sources", "procfs", "--duration", "1", "--format", "csv", stdin=sql)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["a", "1", "b", "x;y", "seen", "true"]


def test_repl_with_a_pipe_on_stdin_runs_it_as_a_script():
    script = ".mode csv\nselect 2 as b;\nselect * from nope;\nselect 3 as c;\n"
    result = tracedb("repl", "--sources", "procfs", stdin=script)
    assert result.returncode == 1, "a failed statement makes the exit status 1"
    assert result.stdout.splitlines()[:2] == ["b", "2"] and "Error: " in result.stdout and result.stdout.endswith("c\n3\n")
