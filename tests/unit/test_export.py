"""Parquet export on a store fed by hand: layout, atomicity, exactly-once, lost rows, SQL over the files."""

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from tests.unit.helpers import EVENTS, FakeClock, events_batch
from tracedb.export import ContinuousExporter, ExportError, ParquetSource, export_tables, parse_time
from tracedb.export.writer import STATE_FILE, ExportDir
from tracedb.storage import QueryEngine, QueryError, Retention, TableStore

HOUR_US = 3600 * 1_000_000
START_US = 1_700_000_000_000_000  # 2023-11-14 22:13:20 UTC: rows below cross an hour and a date


def collection(retention: Retention | None = None) -> SimpleNamespace:
    """What the exporters use of a Collector: its store and its SQL engine."""
    clock = FakeClock(START_US)
    store = TableStore([EVENTS], retention, clock_us=clock)
    return SimpleNamespace(store=store, engine=QueryEngine(store), clock=clock)


def files_sql(directory: Path) -> str:
    return f"read_parquet('{directory}/events/**/*.parquet', hive_partitioning = true)"


def read_with_duckdb(directory: Path) -> pa.Table:
    return duckdb.sql(f"select * from {files_sql(directory)} order by seq").arrow().read_all()


def visible_parquet_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("**/*.parquet"))


def exported_seqs(directory: Path) -> list[int]:
    return read_with_duckdb(directory).column("seq").to_pylist()


def state(directory: Path) -> dict:
    return json.loads((directory / STATE_FILE).read_text())


def test_files_hold_the_store_rows_for_duckdb_and_pyarrow(tmp_path):
    c = collection()
    c.store.append("events", events_batch(0, 300, START_US, step_us=HOUR_US // 100))
    summary = export_tables(c, tmp_path)

    expected = c.store.read("events").sort_by("seq")
    by_duckdb = read_with_duckdb(tmp_path)
    assert by_duckdb.drop_columns(["date", "hour"]).to_pylist() == expected.to_pylist()
    types = duckdb.sql(f"describe select * from {files_sql(tmp_path)}").fetchall()
    assert [(name, kind) for name, kind, *_ in types] == [
        ("time_", "TIMESTAMP WITH TIME ZONE"), ("seq", "BIGINT"), ("path", "VARCHAR"), ("date", "DATE"), ("hour", "BIGINT"),
    ]

    dataset = ds.dataset(tmp_path / "events", partitioning="hive")
    by_pyarrow = dataset.to_table().sort_by("seq")
    assert by_pyarrow.drop_columns(["date", "hour"]).equals(expected)
    for field in EVENTS.arrow_schema:
        assert dataset.schema.field(field.name).metadata == field.metadata, "column descriptions travel with the files"

    for row in by_pyarrow.select(["time_", "date", "hour"]).to_pylist():
        assert (row["date"], row["hour"]) == (row["time_"].strftime("%Y-%m-%d"), row["time_"].hour)
    assert summary.rows == 300 and summary.files == len(visible_parquet_files(tmp_path)) == 4  # hours 22, 23, 0 and 1
    assert "events: 300 rows in 4 files" in str(summary)


def test_since_must_come_before_until_and_tables_must_exist(tmp_path):
    c = collection()
    with pytest.raises(ValueError, match="must be before"):
        export_tables(c, tmp_path, since="now", until="1h")
    with pytest.raises(ValueError, match="no table nosuch"):
        export_tables(c, tmp_path, tables=["nosuch"])


def test_time_window_is_half_open(tmp_path):
    c = collection()
    c.store.append("events", events_batch(0, 100, START_US, step_us=1_000_000))
    since = dt.datetime.fromtimestamp(START_US / 1e6 + 10, dt.UTC)
    export_tables(c, tmp_path, since=since.replace(tzinfo=None), until=since + dt.timedelta(seconds=10))
    assert exported_seqs(tmp_path) == list(range(10, 20))


def test_parse_time_forms():
    now_us = START_US
    assert parse_time("now", now_us) == now_us
    assert parse_time("-10m", now_us) == parse_time("10m", now_us) == now_us - 600_000_000
    assert parse_time("1.5h", now_us) == now_us - 5400_000_000
    assert parse_time("2023-11-14 22:13:20", now_us) == START_US, "no zone: UTC"
    assert parse_time("2023-11-14T23:13:20+01:00", now_us) == START_US
    with pytest.raises(ValueError, match="not a time"):
        parse_time("yesterday-ish", now_us)


def fail_to_rename_parquet_files(monkeypatch) -> None:
    real_replace = os.replace

    def replace(src, dst):
        if str(dst).endswith(".parquet"):
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)


def test_a_failure_between_write_and_rename_leaves_nothing_visible(tmp_path, monkeypatch):
    c = collection()
    c.store.append("events", events_batch(0, 300, START_US, step_us=HOUR_US // 100))

    fail_to_rename_parquet_files(monkeypatch)
    with pytest.raises(RuntimeError, match="0 of 4 files"):
        export_tables(c, tmp_path)
    monkeypatch.undo()
    assert not visible_parquet_files(tmp_path) and not list(tmp_path.glob("**/.part-*"))
    assert state(tmp_path)["runs"][0]["tables"]["events"]["files"] == 0


# Run in a subprocess so that it can die mid-write: argv = directory, how to die.
WRITER = """
import os, sys
from types import SimpleNamespace
import numpy as np, pyarrow as pa, pyarrow.compute as pc
from tests.unit.helpers import EVENTS
from tracedb.export import export_tables
from tracedb.export.writer import ExportDir
from tracedb.storage import TableStore

directory, death = sys.argv[1:3]
if death == "after-rename":  # files renamed, the state file not updated yet
    ExportDir._record_published = lambda self, *args: os._exit(9)
rows = int(sys.argv[3])
seq = np.arange(rows)
store = TableStore([EVENTS], clock_us=lambda: 1_700_000_000_000_000)  # or the age limit drops these rows
store.append("events", pa.table({
    "time_": pa.array(1_700_000_000_000_000 + seq * 500, pa.timestamp("us", tz="UTC")),
    "seq": seq,
    "path": pc.cast(pa.array(seq * 7919 % 1000003), pa.string()),
}, schema=EVENTS.arrow_schema))
export_tables(SimpleNamespace(store=store), directory)
"""


def run_writer(directory: Path, death: str, rows: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(directory), death, str(rows)], cwd=Path(__file__).parents[2])


def test_a_writer_killed_mid_write_leaves_no_visible_file_and_the_next_run_cleans_up(tmp_path):
    writer = run_writer(tmp_path, "sigkill", 4_000_000)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("**/.part-*.parquet.tmp")):
        assert writer.poll() is None and time.monotonic() < deadline, "the writer never started a file"
        time.sleep(0.005)
    writer.send_signal(signal.SIGKILL)
    writer.wait()

    assert list(tmp_path.glob("**/.part-*.parquet.tmp")), "killed while writing"
    assert not visible_parquet_files(tmp_path)
    assert ds.dataset(tmp_path / "events", partitioning="hive").files == []
    with pytest.raises(duckdb.IOException, match="No files found"):
        read_with_duckdb(tmp_path)

    next_run = ExportDir(tmp_path, kind="export")
    assert any("removed 1 unfinished" in note for note in next_run.notes)
    assert not list(tmp_path.glob("**/.part-*")), "the next run removed the temporary file"
    next_run.close()
    assert [r["state"] for r in state(tmp_path)["runs"]] == ["interrupted", "finished"]


def test_files_renamed_before_a_crash_are_counted_into_the_dead_run(tmp_path):
    writer = run_writer(tmp_path, "after-rename", 10_000)
    assert writer.wait(60) == 9
    assert len(exported_seqs(tmp_path)) == 10_000, "renamed files are complete"
    assert state(tmp_path)["runs"][0]["tables"] == {}

    next_run = ExportDir(tmp_path, kind="continuous")
    next_run.close()
    dead, restarted = state(tmp_path)["runs"]
    assert dead["state"] == "interrupted" and dead["tables"]["events"]["rows"] == 10_000
    assert restarted["run"] == 2 and restarted["state"] == "finished"


def test_one_writer_at_a_time_and_runs_never_share_file_names(tmp_path):
    c = collection()
    c.store.append("events", events_batch(0, 10, START_US))
    first = ExportDir(tmp_path, kind="continuous")
    with pytest.raises(ExportError, match=f"another tracedb export \\(pid {os.getpid()}\\)"):
        export_tables(c, tmp_path)
    first.close()
    export_tables(c, tmp_path)
    export_tables(c, tmp_path)
    names = [p.name for p in visible_parquet_files(tmp_path)]
    assert sorted(names) == ["part-000002-000001.parquet", "part-000003-000001.parquet"]


def test_continuous_export_writes_each_row_once_and_counts_what_retention_took(tmp_path):
    # 160 s age limit: partitions seal after 10 s and go once their newest row is 160 s old
    c = collection(Retention(max_bytes=1 << 30, max_age_s=160))
    exporter = ContinuousExporter(c, tmp_path, every_s=60, log=lambda message: None)

    def append(first_seq: int, advance_s: float = 0) -> None:
        c.clock.now_us += int(advance_s * 1e6)
        c.store.append("events", events_batch(first_seq, 10, c.clock.now_us))

    append(0)
    exporter.export_pending()  # 0-9, from the open partition
    append(10)
    append(20, advance_s=11)  # seals 0-19, of which 0-9 are exported
    exporter.export_pending()  # 10-29
    append(30)
    append(40, advance_s=200)  # seals 20-39; both sealed partitions are now too old
    exporter.export_pending()  # 30-39 went unexported: lost; 40-49 written
    summary = exporter.stop()

    assert exported_seqs(tmp_path) == [*range(30), *range(40, 50)]
    assert summary.rows == 40 and summary.rows_lost == 10
    assert state(tmp_path)["runs"][0]["tables"]["events"]["rows_lost"] == 10
    status = c.engine.query("select rows_exported, rows_pending, rows_lost, files, error from tracedb_export").to_pylist()
    assert status == [{"rows_exported": 40, "rows_pending": 0, "rows_lost": 10, "files": 3, "error": ""}]


def test_a_pass_that_failed_to_write_is_retried_with_the_same_rows(tmp_path, monkeypatch):
    c = collection()
    exporter = ContinuousExporter(c, tmp_path, every_s=60, log=lambda message: None)
    c.store.append("events", events_batch(0, 10, START_US))

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("tracedb.export.writer.pq.write_table", disk_full)
    with pytest.raises(OSError):
        exporter.export_pending()
    monkeypatch.undo()
    c.store.append("events", events_batch(10, 10, START_US + 10))
    exporter.stop()
    assert exported_seqs(tmp_path) == list(range(20))


def test_a_pass_that_failed_to_rename_stops_the_export(tmp_path, monkeypatch):
    c = collection()
    c.store.append("events", events_batch(0, 10, START_US))
    fail_to_rename_parquet_files(monkeypatch)
    with ContinuousExporter(c, tmp_path, every_s=0.01, log=lambda message: None):
        while not export_error(c):
            time.sleep(0.01)
        monkeypatch.undo()
        time.sleep(0.1)  # passes would run now if the export had not stopped
    assert not visible_parquet_files(tmp_path), "no pass and no final pass ran after the failed one"
    assert export_error(c).startswith("export stopped: 0 of 1 files of a pass were renamed")


def export_error(c: SimpleNamespace) -> str:
    return c.engine.query("select error from tracedb_export").column("error")[0].as_py()


def test_continuous_export_keeps_up_with_concurrent_appends(tmp_path):
    c = collection()
    appended = 0
    with ContinuousExporter(c, tmp_path, every_s=0.01, log=lambda message: None):
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            c.store.append("events", events_batch(appended, 50, START_US + appended))
            appended += 50
            time.sleep(0.001)  # hundreds of appends a second: connectors push once a second each
    assert exported_seqs(tmp_path) == list(range(appended))
    assert len(visible_parquet_files(tmp_path)) >= 3, "several passes ran while appending"


def test_parquet_source_has_the_live_table_names_and_columns(tmp_path):
    c = collection()
    c.store.append("events", events_batch(0, 100, START_US, step_us=HOUR_US // 40))
    export_tables(c, tmp_path)
    stray = tmp_path / "events" / "date=2023-11-14" / "hour=22" / ".part-000009-000001.parquet.tmp"
    stray.write_bytes(next(tmp_path.glob("events/date=2023-11-14/hour=22/*.parquet")).read_bytes())

    source = ParquetSource(tmp_path)
    assert source.tables == ["events"] and source.status() is None
    assert source.table_schemas() == {}, "events has no schema file"
    result = source.query("select * from events order by seq")
    assert result.column_names == EVENTS.column_names
    assert result.to_pylist() == c.store.read("events").to_pylist(), "temporary files are not read"
    with pytest.raises(QueryError, match="nosuch"):
        source.query("select * from nosuch")
    source.close()


def test_parquet_source_interrupts_a_running_query(tmp_path):
    c = collection()
    c.store.append("events", events_batch(0, 10, START_US))
    export_tables(c, tmp_path)
    source = ParquetSource(tmp_path)
    threading.Timer(0.3, source.interrupt).start()
    with pytest.raises(QueryError, match="INTERRUPT"):
        source.query("select count(*) from range(1000000000000) a, events")


def test_parquet_source_refuses_a_directory_without_exports(tmp_path):
    with pytest.raises(ValueError, match="no export directory"):
        ParquetSource(tmp_path / "missing")
    with pytest.raises(ValueError, match="holds no exported tables"):
        ParquetSource(tmp_path)
