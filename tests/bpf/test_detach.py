"""Probes are detached on every exit path: stop(), an exception, SIGTERM, Ctrl-C."""

import json
import signal

import pytest

from tests.bpf.conftest import loaded_bpf_program_ids, start_headless, uprobe_events
from tracedb import Collector


def test_leaving_the_with_block_unloads_the_programs(bpf_ready):
    before = loaded_bpf_program_ids()
    with Collector(sources=["proc_events"]):
        assert loaded_bpf_program_ids() - before, "the connector loaded programs"
    assert loaded_bpf_program_ids() == before
    assert uprobe_events() == ""


def test_an_exception_inside_the_block_unloads_the_programs(bpf_ready):
    before = loaded_bpf_program_ids()
    with pytest.raises(RuntimeError):
        with Collector(sources=["proc_events"]):
            raise RuntimeError("boom")
    assert loaded_bpf_program_ids() == before


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signals_end_the_headless_collector_cleanly(bpf_ready, sig):
    before = loaded_bpf_program_ids()
    proc = start_headless("--format", "json", "-c", "select count(*) as n from tracedb_connectors")
    assert loaded_bpf_program_ids() - before
    status, out, err = proc.stop(sig)
    assert status == 0, err
    assert json.loads(out) == [{"n": 1}], "the -c statements still run after the signal"
    assert loaded_bpf_program_ids() == before
    assert uprobe_events() == ""
