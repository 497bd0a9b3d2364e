"""BTF reader: offsets in blobs assembled here, and in the running kernel's BTF."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import time

import pytest

from tracedb.kernel import btf

INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF = 1, 2, 3, 4, 5, 6, 7, 8
CONST, FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, ENUM64 = 10, 13, 14, 15, 16, 17, 19


class BlobBuilder:
    """Assembles a BTF blob: add types in id order, then `blob()`."""

    def __init__(self, byte_order: str = "<"):
        self.byte_order = byte_order
        self.strings = bytearray(b"\0")
        self.types = bytearray()
        self.count = 0

    def name(self, text: str) -> int:
        if not text:
            return 0
        offset = len(self.strings)
        self.strings += text.encode() + b"\0"
        return offset

    def pack(self, fields: str, *values: int) -> bytes:
        return struct.pack(self.byte_order + fields, *values)

    def add(self, kind: int, name: str = "", vlen: int = 0, size_or_type: int = 0,
            trailer: bytes = b"", kind_flag: bool = False) -> int:
        info = (kind_flag << 31) | (kind << 24) | vlen
        self.types += self.pack("III", self.name(name), info, size_or_type) + trailer
        self.count += 1
        return self.count

    def int_type(self, name: str, size: int, bits: int) -> int:
        return self.add(INT, name, size_or_type=size, trailer=self.pack("I", bits))

    def composite(self, kind: int, name: str, size: int, members: list[tuple[str, int, int]],
                  kind_flag: bool = False) -> int:
        trailer = b"".join(self.pack("III", self.name(member), member_type, offset)
                           for member, member_type, offset in members)
        return self.add(kind, name, len(members), size, trailer, kind_flag)

    def blob(self) -> bytes:
        header = self.pack("HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(self.types),
                           len(self.types), len(self.strings))
        return header + bytes(self.types) + bytes(self.strings)


def add_one_of_every_other_kind(builder: BlobBuilder, int_id: int) -> None:
    """Types of every kind with trailing data, so a wrong skip shifts what follows."""
    builder.add(PTR, size_or_type=int_id)
    builder.add(ARRAY, trailer=builder.pack("III", int_id, int_id, 4))
    builder.add(ENUM, "colour", 2, 4, builder.pack("Ii", builder.name("RED"), 0)
                + builder.pack("Ii", builder.name("BLUE"), 1))
    builder.add(FWD, "opaque")
    builder.add(CONST, size_or_type=int_id)
    proto = builder.add(FUNC_PROTO, vlen=2, size_or_type=int_id,
                        trailer=builder.pack("II", builder.name("a"), int_id) * 2)
    builder.add(12, "a_function", size_or_type=proto)  # FUNC
    variable = builder.add(VAR, "a_variable", size_or_type=int_id, trailer=builder.pack("I", 1))
    builder.add(DATASEC, ".data", 1, 4, builder.pack("III", variable, 0, 4))
    builder.add(FLOAT, "double", size_or_type=8)
    builder.add(DECL_TAG, "a_tag", size_or_type=variable, trailer=builder.pack("i", -1))
    builder.add(18, "a_type_tag", size_or_type=int_id)  # TYPE_TAG
    builder.add(ENUM64, "wide", 1, 8, builder.pack("III", builder.name("BIG"), 1, 2))


def demo_blob(byte_order: str = "<") -> bytes:
    """struct demo { int first; int flag:1; union { long whole; struct { int lo, hi; }; };
    u32 last; };  struct plain { int x; <3-bit int without kind_flag> narrow; }."""
    builder = BlobBuilder(byte_order)
    int_id = builder.int_type("int", 4, 32)
    add_one_of_every_other_kind(builder, int_id)
    long_id = builder.int_type("long", 8, 64)
    u32_id = builder.add(TYPEDEF, "u32", size_or_type=int_id)
    pair_id = builder.composite(STRUCT, "", 8, [("lo", int_id, 0), ("hi", int_id, 32)])
    union_id = builder.composite(UNION, "", 8, [("whole", long_id, 0), ("", pair_id, 0)])
    const_union_id = builder.add(CONST, size_or_type=union_id)
    one_bit = 1 << 24
    builder.composite(STRUCT, "demo", 24, [("first", int_id, 0), ("flag", int_id, one_bit | 32),
                                           ("", const_union_id, 64), ("last", u32_id, 128)],
                      kind_flag=True)
    narrow_id = builder.int_type("int", 4, 3)
    builder.composite(STRUCT, "plain", 8, [("x", int_id, 0), ("narrow", narrow_id, 32)])
    return builder.blob()


@pytest.fixture
def demo_path(tmp_path):
    path = tmp_path / "demo.btf"
    path.write_bytes(demo_blob())
    return str(path)


@pytest.mark.parametrize("byte_order", ["<", ">"])
def test_direct_members(byte_order):
    parsed = btf.Btf(demo_blob(byte_order))
    assert parsed.member_offset("demo", "first") == 0
    assert parsed.member_offset("demo", "last") == 16
    assert parsed.member_offset("plain", "x") == 0


def test_members_of_anonymous_union_and_nested_struct_add_their_offsets(demo_path):
    assert btf.member_offset("demo", "whole", btf_path=demo_path) == 8
    assert btf.member_offset("demo", "lo", btf_path=demo_path) == 8
    assert btf.member_offset("demo", "hi", btf_path=demo_path) == 12


def test_offsets_answers_many_pairs_keyed_struct_dot_member(demo_path):
    found = btf.offsets([("demo", "hi"), ("demo", "last")], btf_path=demo_path)
    assert found == {"demo.hi": 12, "demo.last": 16}


@pytest.mark.parametrize("struct_name, member", [("demo", "flag"), ("plain", "narrow")])
def test_bitfield_is_refused(struct_name, member):
    with pytest.raises(btf.BtfError, match="bitfield"):
        btf.Btf(demo_blob()).member_offset(struct_name, member)


def test_missing_struct_and_member_are_named():
    parsed = btf.Btf(demo_blob())
    with pytest.raises(btf.BtfError, match="no struct or union named 'absent'"):
        parsed.member_offset("absent", "x")
    with pytest.raises(btf.BtfError, match="struct demo has no member 'absent'"):
        parsed.member_offset("demo", "absent")


def test_unknown_kind_and_bad_magic_are_errors():
    builder = BlobBuilder()
    builder.add(31, "future")
    with pytest.raises(btf.BtfError, match="unknown BTF kind 31"):
        btf.Btf(builder.blob())
    with pytest.raises(btf.BtfError, match="not BTF"):
        btf.Btf(b"\0" * 24)


def test_unreadable_file_is_a_btf_error(tmp_path):
    with pytest.raises(btf.BtfError, match="cannot read BTF"):
        btf.member_offset("demo", "first", btf_path=str(tmp_path / "missing"))


def require_vmlinux_btf() -> None:
    if os.path.exists(btf.VMLINUX_BTF):
        return
    reason = f"{btf.VMLINUX_BTF} absent: this kernel exposes no BTF"
    if os.environ.get("CI"):
        pytest.fail(reason)
    print(reason)
    pytest.skip(reason)


def test_real_vmlinux_parses_in_well_under_a_second():
    require_vmlinux_btf()
    with open(btf.VMLINUX_BTF, "rb") as btf_file:
        blob = btf_file.read()
    started = time.perf_counter()
    btf.Btf(blob).member_offset("task_struct", "exit_code")
    elapsed = time.perf_counter() - started
    print(f"vmlinux BTF parse + one lookup: {elapsed * 1000:.0f} ms")
    assert elapsed < 0.5


def bpftool_member_bit_offsets(struct_name: str) -> dict[str, int]:
    """Named, non-bitfield members of a struct as `bpftool btf dump ... format raw` lists them."""
    dump = subprocess.run(["bpftool", "btf", "dump", "file", btf.VMLINUX_BTF, "format", "raw"],
                          check=True, capture_output=True, text=True).stdout
    start = dump.index(f"STRUCT '{struct_name}' ")
    block = dump[start:].split("\n[", 1)[0]
    members = re.findall(r"^\s+'(\w+)' type_id=\d+ bits_offset=(\d+)$", block, re.MULTILINE)
    return {name: int(bits) for name, bits in members}


def test_real_vmlinux_offsets_match_bpftool():
    require_vmlinux_btf()
    if shutil.which("bpftool") is None:
        print("bpftool not installed: nothing to compare with")
        pytest.skip("bpftool not installed: nothing to compare with")
    expected_bits = bpftool_member_bit_offsets("task_struct")
    assert {"exit_code", "start_boottime", "real_parent", "tgid", "pid"} <= expected_bits.keys()
    found = btf.offsets([("task_struct", member) for member in expected_bits])
    assert {member: found[f"task_struct.{member}"] * 8 for member in expected_bits} == expected_bits
