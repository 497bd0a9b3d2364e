"""The command line with BPF sources: streaming with --print, refusal without privileges."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

from tests.bpf.conftest import start_headless
from tests.conftest import require


def test_print_streams_rows_as_they_arrive(bpf_ready):
    proc = start_headless("--print", "proc_exit_events,exec_events", "--format", "jsonl")
    child = subprocess.Popen(["/bin/sh", "-c", "exit 7"])
    child.wait()
    time.sleep(1.5)
    status, out, err = proc.stop(signal.SIGTERM)
    assert status == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    exits = [r for r in rows if r["table"] == "proc_exit_events" and r["pid"] == child.pid]
    execs = [r for r in rows if r["table"] == "exec_events" and r["pid"] == child.pid]
    assert [(r["exit_code"], r["signal"], r["comm"]) for r in exits] == [(7, 0, "sh")]
    assert [r["filename"] for r in execs] == ["/bin/sh"]


def test_without_privileges_the_collector_refuses_with_the_fix(bpf_ready):
    require(shutil.which("setpriv") is not None, "setpriv (util-linux) is needed to drop privileges")
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
         sys.executable, "-m", "tracedb", "run", "--sources", "proc_events", "--duration", "1"],
        capture_output=True, text=True, timeout=60, cwd="/",
        env={**os.environ, "HOME": "/nonexistent"},
    )
    assert result.returncode == 2, result
    assert "cannot start the BPF connectors" in result.stderr and "fix:" in result.stderr
    assert "Traceback" not in result.stderr
