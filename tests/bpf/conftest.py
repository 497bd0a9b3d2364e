"""Fixtures for tests that load real BPF programs: root and a prepared kernel
environment (`tracedb doctor --fix`) are required; in CI their absence fails."""

import json
import os
import subprocess

import pytest

from tests.conftest import require
from tracedb.kernel import doctor


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.bpf)


@pytest.fixture(scope="session")
def bpf_ready():
    require(os.geteuid() == 0, "BPF tests need root")
    problems = doctor.preflight()
    require(not problems, "kernel environment not ready: " + "; ".join(f"{p.what} (fix: {p.fix})" for p in problems))


def loaded_bpf_program_ids() -> set[int]:
    out = subprocess.run(["bpftool", "-j", "prog", "show"], check=True, capture_output=True, text=True).stdout
    return {p["id"] for p in json.loads(out)}


def uprobe_events() -> str:
    with open("/sys/kernel/tracing/uprobe_events") as f:
        return f.read()
