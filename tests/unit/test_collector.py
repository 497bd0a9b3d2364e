"""Collector behaviour with connectors that are unavailable or fail (no root)."""

import os
import threading
import time

import pytest

from tracedb import Collector
from tracedb.collector import DEFAULT_NICE
from tracedb.connectors import registry
from tracedb.connectors.base import Connector, Unavailable


class NeedsMissingKernel(Connector):
    name = "test_unavailable"
    tables = ("exec_events",)
    description = "always unavailable"

    def start(self):
        raise Unavailable("tracepoint sched:nope does not exist on this kernel")


class FailsWhileRunning(Connector):
    name = "test_failing"
    tables = ("proc_exit_events",)
    description = "fails at its second sample"
    sampling_period_s = 0.05

    def __init__(self):
        super().__init__()
        self.samples = 0
        self.stopped = 0

    def sample(self):
        self.samples += 1
        if self.samples == 2:
            raise OSError("the device went away")

    def flush(self):
        return {}

    def stop(self):
        self.stopped += 1


@pytest.fixture
def test_connectors():
    registry.connectors()
    for cls in (NeedsMissingKernel, FailsWhileRunning):
        registry.register(cls)
    yield
    for cls in (NeedsMissingKernel, FailsWhileRunning):
        registry._registry.pop(cls.name)


def test_unavailable_connector_is_skipped_and_the_others_run(test_connectors):
    logged = []
    with Collector(sources=["test_unavailable", "procfs"], log=logged.append) as collector:
        time.sleep(1.2)
        states = collector.query("select connector, state, detail, events_waiting, oldest_waiting "
                                 "from tracedb_connectors order by connector").to_pylist()
        rows = collector.query("select count(*) as n from process_stats").to_pylist()[0]["n"]
    assert states[0] == {"connector": "procfs", "state": "running", "detail": "", "events_waiting": 0,
                         "oldest_waiting": None}
    assert states[1]["state"] == "skipped" and "sched:nope" in states[1]["detail"]
    assert rows > 0
    assert any("test_unavailable skipped" in m for m in logged)


def test_connector_failing_while_running_is_stopped_and_reported(test_connectors):
    logged = []
    with Collector(sources=["test_failing", "procfs"], log=logged.append) as collector:
        time.sleep(1.2)
        failing = next(r.connector for r in collector.runs if r.name == "test_failing")
    states = {r.name: (r.state, r.detail) for r in collector.runs}
    assert states["test_failing"] == ("failed", "OSError: the device went away")
    assert states["procfs"][0] == "stopped"
    assert failing.stopped >= 1, "a failed connector still releases its resources"
    assert any("test_failing failed" in m for m in logged)


def thread_nice(tid: int) -> int:
    """A thread's niceness, field 19 of proc(5)'s stat."""
    with open(f"/proc/self/task/{tid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[16])


def test_connector_threads_run_nicer_than_the_process():
    own = thread_nice(threading.get_native_id())
    for nice, expected in ((DEFAULT_NICE, min(19, own + DEFAULT_NICE)), (0, own), (19, 19)):
        with Collector(sources=["procfs"], nice=nice) as collector:
            assert thread_nice(collector.runs[0].thread.native_id) == expected
        assert thread_nice(threading.get_native_id()) == own, "only the connector threads change"


def test_idle_puts_connector_threads_in_sched_idle():
    with Collector(sources=["procfs"], nice="idle") as collector:
        assert os.sched_getscheduler(collector.runs[0].thread.native_id) == os.SCHED_IDLE
    assert os.sched_getscheduler(0) == os.SCHED_OTHER, "only the connector threads change"


@pytest.mark.parametrize("nice", [20, -1, "lazy"])
def test_nice_out_of_range_is_refused(nice):
    with pytest.raises(ValueError, match="nice must be in 0..19 or 'idle'"):
        Collector(sources=["procfs"], nice=nice)
