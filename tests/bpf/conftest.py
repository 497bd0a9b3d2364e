"""Fixtures for tests that load real BPF programs: root and a prepared kernel
environment (`tracedb doctor --fix`) are required; in CI their absence fails."""

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import require
from tracedb import Collector
from tracedb.kernel import doctor


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.bpf)


@pytest.fixture(scope="session")
def bpf_ready():
    require(os.geteuid() == 0, "BPF tests need root")
    problems = doctor.preflight()
    require(not problems, "kernel environment not ready: " + "; ".join(f"{p.what} (fix: {p.fix})" for p in problems))


@pytest.fixture(scope="module")
def tracer(bpf_ready):
    """A collector running the socket tracer, one per test module."""
    with Collector(sources=["socket_tracer"]) as collector:
        assert [r.state for r in collector.runs] == ["running"], collector.runs
        yield collector


def loaded_bpf_program_ids() -> set[int]:
    out = subprocess.run(["bpftool", "-j", "prog", "show"], check=True, capture_output=True, text=True).stdout
    return {p["id"] for p in json.loads(out)}


def uprobe_events() -> str:
    with open("/sys/kernel/tracing/uprobe_events") as f:
        return f.read()


class Headless:
    """A `tracedb run --sources proc_events ...` child, its output read by threads
    (so a full pipe never blocks it)."""

    def __init__(self, *extra: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tracedb", "run", "--sources", "proc_events", *extra],
            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self.stdout: list[str] = []
        self.stderr: queue.Queue = queue.Queue()
        self._readers = [
            threading.Thread(target=lambda: self.stdout.extend(self.proc.stdout), daemon=True),
            threading.Thread(target=lambda: [self.stderr.put(line) for line in self.proc.stderr], daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        self.stderr_seen: list[str] = []

    def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.stderr.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.stderr_seen.append(line)
            if line.startswith("tracedb: ready"):
                return
        self.proc.kill()
        self.proc.wait()
        pytest.fail("tracedb did not become ready:\n" + "".join(self.stderr_seen))

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30) -> tuple[int, str, str]:
        """Send `sig`, wait for the exit; (exit status, stdout, stderr)."""
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"tracedb did not exit within {timeout_s} s of signal {sig}")
        for reader in self._readers:
            reader.join(timeout=5)
        while not self.stderr.empty():
            self.stderr_seen.append(self.stderr.get())
        return self.proc.returncode, "".join(self.stdout), "".join(self.stderr_seen)


def start_headless(*extra: str) -> Headless:
    headless = Headless(*extra)
    headless.wait_ready()
    return headless
