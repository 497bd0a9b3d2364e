"""The numpy mirrors of the BPF event structs agree with the C headers.

Each BPF connector module names its header (BPF_HEADER) and mirrors
(BPF_STRUCTS); this test compiles a program with gcc that prints the C sizes
and offsets, and compares them field by field.
"""

import importlib
import shutil
import subprocess

import pytest

from tests.conftest import require
from tracedb.connectors.bpf import bpf_root
from tracedb.connectors.registry import connectors


def mirrored_modules():
    modules = {importlib.import_module(cls.__module__) for cls in connectors().values()}
    return sorted((m for m in modules if hasattr(m, "BPF_STRUCTS")), key=lambda m: m.__name__)


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
