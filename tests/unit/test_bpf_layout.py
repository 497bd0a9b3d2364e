"""The numpy mirrors of the BPF event structs agree with the C headers.

Each module that mirrors a BPF header names it (BPF_HEADER) and its mirrors
(BPF_STRUCTS); this test compiles a program with gcc that prints the C sizes
and offsets, and compares them field by field.
"""

import importlib
import pkgutil
import shutil
import subprocess

import pytest

from tests.conftest import require
from tracedb.connectors.bpf import bpf_root
import tracedb.connectors


def mirrored_modules():
    """Every module under tracedb.connectors that declares BPF_STRUCTS."""
    names = [m.name for m in pkgutil.walk_packages(tracedb.connectors.__path__, "tracedb.connectors.")]
    modules = [importlib.import_module(name) for name in names]
    return [m for m in modules if hasattr(m, "BPF_STRUCTS")]


def c_layout(tmp_path, header: str, structs: dict) -> dict[str, int]:
    lines = [f'#include "{bpf_root() / header}"', "#include <stdio.h>", "#include <stddef.h>", "int main(void) {"]
    for struct, dtype in structs.items():
        lines.append(f'printf("{struct} %zu\\n", sizeof(struct {struct}));')
        for field in dtype.names:
            lines.append(f'printf("{struct}.{field} %zu\\n", offsetof(struct {struct}, {field}));')
    lines.append("return 0; }")
    source = tmp_path / "layout.c"
    source.write_text("\n".join(lines))
    subprocess.run(["gcc", "-o", tmp_path / "layout", source], check=True)
    out = subprocess.run([tmp_path / "layout"], check=True, capture_output=True, text=True).stdout
    return {key: int(value) for key, value in (line.split() for line in out.splitlines())}


@pytest.mark.parametrize("module", mirrored_modules(), ids=lambda m: m.__name__)
def test_mirrors_match_c_structs(module, tmp_path):
    require(shutil.which("gcc") is not None, "gcc is needed to compile the layout probe")
    layout = c_layout(tmp_path, module.BPF_HEADER, module.BPF_STRUCTS)
    for struct, dtype in module.BPF_STRUCTS.items():
        assert dtype.itemsize == layout[struct], f"sizeof(struct {struct})"
        for field in dtype.names:
            assert dtype.fields[field][1] == layout[f"{struct}.{field}"], f"offsetof({struct}, {field})"
