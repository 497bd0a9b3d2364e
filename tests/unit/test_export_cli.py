"""Parquet export end to end without BPF: `tracedb run --export-dir`, `tracedb export` and
`tracedb query --parquet` in subprocesses, collecting with the procfs connector (no root needed)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import pytest

from tests.conftest import require
from tracedb.export.writer import STATE_FILE

TRACEDB = [sys.executable, "-m", "tracedb"]
TABLES = ("process_stats", "processes")


def tracedb(*args: str, **options) -> subprocess.CompletedProcess:
    return subprocess.run([*TRACEDB, *args], capture_output=True, text=True, timeout=120, **options)


# `tracedb run` on procfs exporting every second, printing at the end what the store appended per table
EXPORTING = [
    "run", "--sources", "procfs", "--export-every", "1",
    "--format", "json", "-c", "select table_name, rows_appended from tracedb_tables",
]


def run_exporting(directory: Path, **options) -> dict[str, int]:
    """Collect and export for 3 s; rows appended per table."""
    result = tracedb(*EXPORTING, "--export-dir", str(directory), "--duration", "3", **options)
    assert result.returncode == 0, result.stderr
    return appended_by_table(result.stdout)


def start_exporting(directory: Path) -> tuple[subprocess.Popen, str]:
    """Collect and export until signalled; returns once collecting, with what it logged until then."""
    process = subprocess.Popen(
        [*TRACEDB, *EXPORTING, "--export-dir", str(directory)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    log = ""
    for line in process.stderr:
        log += line
        if line.startswith("tracedb: ready"):
            return process, log
    pytest.fail(f"tracedb run exited with {process.wait()} before it was ready:\n{log}")


def appended_by_table(stdout: str) -> dict[str, int]:
    return {row["table_name"]: row["rows_appended"] for row in json.loads(stdout.splitlines()[0])}


def files_sql(directory: Path, table: str) -> str:
    return f"read_parquet('{directory}/{table}/**/*.parquet', hive_partitioning = true)"


def exported_rows_by_run(directory: Path, table: str) -> dict[int, int]:
    if not any((directory / table).glob("**/*.parquet")):
        return {}  # every row was dropped before its export (a slow machine), or none came
    rows = duckdb.sql(
        f"select regexp_extract(filename, 'part-(\\d+)-', 1)::int as run, count(*) from {files_sql(directory, table)} group by run"
    ).fetchall()
    return dict(rows)


def state_runs(directory: Path) -> list[dict]:
    return json.loads((directory / STATE_FILE).read_text())["runs"]


def test_continuous_export_writes_every_row_once_across_restarts_and_a_kill(tmp_path):
    """Run 1 stops after --duration, run 3 on SIGTERM: their files hold exactly the rows they
    collected. Run 2 is killed with SIGKILL: its files hold exactly the rows it had collected up to
    its last finished pass, a gapless prefix of its samples; what it collected after that pass (at
    most the --export-every period plus one push) died with it and was never written anywhere."""
    first = run_exporting(tmp_path)

    killed, _ = start_exporting(tmp_path)
    time.sleep(2.5)  # two passes or so
    killed.send_signal(signal.SIGKILL)
    killed.communicate()

    third, third_startup = start_exporting(tmp_path)
    time.sleep(2.5)
    third.send_signal(signal.SIGTERM)
    third_out, third_err = third.communicate(timeout=60)
    assert third.returncode == 0, third_err
    assert "run 2 (pid" in third_startup and "ended without finishing" in third_startup
    third_appended = appended_by_table(third_out)

    duplicates = duckdb.sql(
        f"select time_, upid from {files_sql(tmp_path, 'process_stats')} group by all having count(*) > 1"
    ).fetchall()
    assert duplicates == []
    runs = state_runs(tmp_path)
    assert [(r["run"], r["state"]) for r in runs] == [(1, "finished"), (2, "interrupted"), (3, "finished")]
    for table in TABLES:
        exported = exported_rows_by_run(tmp_path, table)
        assert exported[1] == first[table] and exported[3] == third_appended[table]
        assert exported.get(2, 0) == runs[1]["tables"].get(table, {}).get("rows", 0), "the state counts the dead run's files"
    assert exported_rows_by_run(tmp_path, "process_stats")[2] > 0, "the killed run finished passes before it died"

    sample_times = duckdb.sql(
        f"select distinct epoch(time_) as t from {files_sql(tmp_path, 'process_stats')} "
        "where filename like '%part-000002-%' order by t"
    ).fetchall()
    gaps = [later - earlier for (earlier,), (later,) in zip(sample_times, sample_times[1:])]
    assert all(gap < 1.5 for gap in gaps), f"samples are taken every second, so no sample is missing: {gaps}"
    assert not list(tmp_path.glob("**/.part-*")), "no temporary file is left"


def test_rows_dropped_by_retention_before_export_are_counted(tmp_path):
    # 16K per table: every push seals a partition too big for the budget, which retention drops at once
    result = tracedb(
        "run", "--sources", "procfs", "--retention-bytes", "16K", "--export-dir", str(tmp_path), "--export-every", "60",
        "--duration", "3", "--format", "json",
        "-c", "select table_name, rows_exported, rows_pending, rows_lost from tracedb_export order by table_name",
        "-c", "select table_name, rows_appended from tracedb_tables order by table_name",
    )
    assert result.returncode == 0, result.stderr
    export_status, store_status = (json.loads(line) for line in result.stdout.splitlines())
    recorded = state_runs(tmp_path)[0]["tables"]
    for exported, appended in zip(export_status, store_status):
        table = exported["table_name"]
        assert exported["rows_exported"] + exported["rows_lost"] == appended["rows_appended"]
        assert exported["rows_pending"] == 0
        assert recorded[table]["rows_lost"] == exported["rows_lost"]
        assert sum(exported_rows_by_run(tmp_path, table).values()) == exported["rows_exported"]
    assert export_status[0]["table_name"] == "process_stats" and export_status[0]["rows_lost"] > 0
    assert "rows of process_stats were dropped by retention before they could be exported" in result.stderr


def test_one_shot_export_and_query_over_the_files(tmp_path):
    result = tracedb("export", "--out", str(tmp_path), "--tables", "processes", "--duration", "1")
    assert result.returncode == 0, result.stderr
    assert "processes:" in result.stdout and "process_stats" not in result.stdout
    assert [d.name for d in tmp_path.iterdir() if not d.name.startswith("_")] == ["processes"]
    exported = sum(exported_rows_by_run(tmp_path, "processes").values())

    query = tracedb("query", "--parquet", str(tmp_path), "-c", "select count(*) as n from processes", "--format", "json")
    assert query.returncode == 0, query.stderr
    assert json.loads(query.stdout) == [{"n": exported}]

    nothing = tracedb("export", "--out", str(tmp_path), "--tables", "processes", "--since", "now", "--duration", "0.5")
    assert nothing.returncode == 0 and "exported 0 rows in 0 files" in nothing.stdout
    bad = tracedb("export", "--out", str(tmp_path), "--since", "soon")
    assert bad.returncode == 2 and "not a time: 'soon'" in bad.stderr
    alone = tracedb("run", "--sources", "procfs", "--export-every", "5", "--duration", "1")
    assert alone.returncode == 2 and "--export-every needs --export-dir" in alone.stderr


@pytest.fixture
def world_readable_dir():
    directory = Path(tempfile.mkdtemp(prefix="tracedb-export-"))
    directory.chmod(0o755)  # pytest's tmp_path is private to its user
    yield directory
    shutil.rmtree(directory)


def test_query_parquet_needs_neither_root_nor_bpf(world_readable_dir):
    run_exporting(world_readable_dir, umask=0o022)
    as_nobody = []
    if os.geteuid() == 0:
        require(shutil.which("setpriv") is not None, "setpriv (util-linux) is needed to query as an unprivileged user")
        as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    query_then_report_bcc = (
        "import sys; from tracedb import cli; "
        "status = cli.main(['query', '--parquet', sys.argv[1], '-c', 'select count(*) > 0 as seen from process_stats', '--format', 'json']); "
        "print('bcc loaded' if 'bcc' in sys.modules else 'no bcc'); sys.exit(status)"
    )
    result = subprocess.run(
        [*as_nobody, sys.executable, "-c", query_then_report_bcc, str(world_readable_dir)],
        capture_output=True, text=True, timeout=60, cwd="/", env={**os.environ, "HOME": "/nonexistent"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ['[{"seen": true}]', "no bcc"]
