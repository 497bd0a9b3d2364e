import subprocess
import sys

import pytest

from tracedb import cli


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "tracedb", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--duration", "-3"], "duration"),
        (["run", "--duration", "soon"], "not a positive duration"),
        (["run", "--format", "xml"], "invalid choice"),
        (["run", "--retention-bytes", "lots"], "not a positive size"),
        (["run", "--nice", "25"], "expected 0..19 or idle, got '25'"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_argument_errors_exit_2_with_a_message(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.build_parser().parse_args(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_unknown_source_is_refused_with_the_known_ones():
    result = run_cli("run", "--sources", "nosuch", "--duration", "1")
    assert result.returncode == 2
    assert "unknown source 'nosuch'" in result.stderr and "procfs" in result.stderr


def test_sizes_and_durations_parse():
    assert cli.parse_size("64M") == 64 << 20 and cli.parse_size("2GiB") == 2 << 30 and cli.parse_size("100") == 100
    assert cli.parse_seconds("5m") == 300 and cli.parse_seconds("1.5") == 1.5


def test_tables_and_schema_need_no_root():
    tables = run_cli("tables")
    assert tables.returncode == 0 and "process_stats" in tables.stdout and "exec_events" in tables.stdout
    schema = run_cli("schema", "process_stats")
    assert schema.returncode == 0 and "rss_bytes" in schema.stdout and "bytes" in schema.stdout
    missing = run_cli("schema", "nope")
    assert missing.returncode == 2 and "no table 'nope'" in missing.stderr


def test_run_procfs_headless_prints_sql_results_and_errors():
    result = run_cli(
        "run", "--sources", "procfs", "--duration", "1.5", "--format", "json",
        "-c", "select count(*) > 0 as seen from process_stats",
        "-c", "select * from no_such_table",
        "-c", "select count(*) > 0 as seen from processes",
    )
    assert "tracedb: ready" in result.stderr
    assert result.returncode == 1, "a failing statement makes the exit status non-zero"
    assert "no_such_table" in result.stderr
    assert result.stdout.splitlines() == ['[{"seen": true}]', '[{"seen": true}]']
