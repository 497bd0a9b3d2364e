"""Shared test policy.

Tests marked `bpf` need root and a BPF-capable kernel set up by `tracedb
doctor --fix`. In CI (env CI set) a missing requirement fails the test loudly;
elsewhere it skips and says why.
"""

import os

import pytest

IN_CI = bool(os.environ.get("CI"))


def require(condition: bool, why: str) -> None:
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {why}")
    pytest.skip(why)
