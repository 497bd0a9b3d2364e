"""`tracedb doctor` on the real machine: --fix sets it up, and then every probe kind
the project relies on attaches, fires and is cleaned up."""

from __future__ import annotations

import os
import re

import pytest

from tracedb.kernel import doctor, tracefs

pytestmark = pytest.mark.bpf

REQUIRED_PROBES = ["syscall tracepoint", "tracepoint", "uprobe", "perf_event", "ring buffer"]


@pytest.fixture(autouse=True)
def require_root():
    if os.geteuid() == 0:
        return
    reason = "doctor needs root to mount tracefs, install headers and load BPF programs"
    if os.environ.get("CI"):
        pytest.fail(reason)
    print(reason)
    pytest.skip(reason)


def probe_states(output: str) -> dict[str, str]:
    """probe name -> state word, from the doctor's matrix."""
    return {name: state for name, state in
            re.findall(r"^probe (\S+(?: \S+)?)\s{2,}(\S+)", output, re.MULTILINE)}


def test_fix_then_report_finds_every_required_probe_kind_working(capsys):
    fixed = doctor.report(fix=True)
    fix_output = capsys.readouterr().out
    assert fixed == doctor.EXIT_READY, fix_output
    status = doctor.report(fix=False)
    output = capsys.readouterr().out
    assert status == doctor.EXIT_READY, output
    states = probe_states(output)
    assert {name: states.get(name) for name in REQUIRED_PROBES} == dict.fromkeys(REQUIRED_PROBES, "ok")
    assert states.get("kprobe") in {"ok", "no"}
    with open(os.path.join(tracefs.TRACEFS, "uprobe_events")) as uprobe_events:
        assert uprobe_events.read().strip() == ""


def test_preflight_finds_nothing_missing_after_fix():
    assert doctor.preflight() == []
