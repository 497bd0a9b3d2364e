"""`tracedb run --schedule` end to end (procfs only, no root)."""

import json
import subprocess
import sys


def run_cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "tracedb", *args], capture_output=True, text=True, timeout=60, cwd=cwd
    )


SCHEDULE = """
[query.samples]
sql = "select count(*) as n from process_stats where time_ >= $window_start and time_ < $window_end"
interval = "1s"
style = "snapshot"
sink = "jsonl"
path = "results.jsonl"

[query.comms]
sql = "select distinct comm from process_stats"
interval = 1
sink = "table"
table = "comms_seen"
"""


def test_run_with_a_schedule_writes_jsonl_and_a_table_read_back_with_c(tmp_path):
    (tmp_path / "s.toml").write_text(SCHEDULE)
    result = run_cli(
        "run", "--sources", "procfs", "--schedule", "s.toml", "--duration", "4.5", "--format", "jsonl",
        "-c", "select count(*) > 0 as seen, min(counter) = 0 as from_first_run, min(action) as first from comms_seen",
        "-c", "select name, runs, failures from tracedb_schedule order by name",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    seen, status_comms, status_samples = (json.loads(line) for line in result.stdout.splitlines())
    # Differential: later runs add rows only when a comm appears or goes, so only the first run is sure.
    assert seen == {"seen": True, "from_first_run": True, "first": "added"}
    assert status_comms["name"] == "comms" and status_comms["runs"] >= 2 and status_comms["failures"] == 0
    lines = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(lines) >= 2 and {x["name"] for x in lines} == {"samples"}
    assert all(x["action"] == "snapshot" for x in lines)
    assert [x["windowStart"] for x in lines[1:]] == [x["windowEnd"] for x in lines[:-1]], "windows are contiguous"
    assert sum(x["columns"]["n"] for x in lines[1:]) > 0, "the procfs samples show in their windows"


def test_a_bad_schedule_stops_run_before_collection_with_line_and_reason(tmp_path):
    (tmp_path / "s.toml").write_text(SCHEDULE.replace('interval = "1s"', 'interval = "5 parsecs"'))
    result = run_cli("run", "--sources", "procfs", "--schedule", "s.toml", "--duration", "1", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("tracedb: s.toml:4: query samples: `interval` must be a positive number")
    assert "ready" not in result.stderr, "refused before the collector started"
