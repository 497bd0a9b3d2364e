"""proc_events against real processes: exits with codes and signals, execs."""

import os
import signal
import subprocess
import time

import pytest

from tracedb import Collector


@pytest.fixture(scope="module")
def collected(bpf_ready):
    """Run proc_events while children exit in known ways; yield (collector, expectations)."""
    exits = {}  # pid -> (exit_code, signal)
    with Collector(sources=["proc_events"]) as collector:
        assert [r.state for r in collector.runs] == ["running"], collector.runs
        for code in (0, 1, 42, 255):
            child = subprocess.Popen(["sh", "-c", f"exit {code}"])
            child.wait()
            exits[child.pid] = (code, 0)
        for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGSEGV):
            child = subprocess.Popen(["sleep", "30"])
            time.sleep(0.1)
            child.send_signal(sig)
            child.wait()
            exits[child.pid] = (0, int(sig))
        true_child = subprocess.Popen(["/bin/true"])
        true_child.wait()
        time.sleep(0.5)
    return collector, exits, true_child.pid


def test_every_child_exit_is_recorded_with_code_and_signal(collected):
    collector, exits, _ = collected
    pids = ",".join(map(str, exits))
    rows = collector.query(
        f"select pid, ppid, exit_code, signal, core_dumped, lifetime_ns, upid from proc_exit_events where pid in ({pids})"
    ).to_pylist()
    got = {r["pid"]: (r["exit_code"], r["signal"]) for r in rows}
    assert got == exits
    assert len(rows) == len(exits), "one row per process, not per thread"
    for r in rows:
        assert r["ppid"] == os.getpid()
        assert 0 < r["lifetime_ns"] < 60e9
        assert r["upid"].startswith(f"{r['pid']}:")


def test_exec_of_known_binary_is_recorded(collected):
    collector, _, true_pid = collected
    rows = collector.query(f"select pid, ppid, uid, filename, comm from exec_events where pid = {true_pid}").to_pylist()
    assert rows == [{"pid": true_pid, "ppid": os.getpid(), "uid": os.getuid(), "filename": "/bin/true", "comm": "true"}]


def test_exit_and_exec_of_one_process_share_its_upid(collected):
    collector, _, true_pid = collected
    rows = collector.query(
        f"select e.upid = x.upid as same from exec_events e join proc_exit_events x using (pid) where pid = {true_pid}"
    ).to_pylist()
    assert rows == [{"same": True}]


def test_no_events_lost_and_connector_state_reported(collected):
    collector, _, _ = collected
    status = collector.query("select state, events, events_lost from tracedb_connectors").to_pylist()
    assert status[0]["state"] == "stopped" and status[0]["events"] > 0 and status[0]["events_lost"] == 0
