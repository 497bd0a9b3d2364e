"""Struct member offsets read from the running kernel's BTF.

The kernel headers BCC compiles against may belong to another kernel version, so
their struct layouts cannot be trusted (KERNEL.md: `task->exit_code` read through
6.12 headers on 6.18 gives 0). The running kernel describes its own types in
`/sys/kernel/btf/vmlinux`; this module reads that file with `struct` alone and
answers "at which byte of struct S is member M", for BPF programs to receive as
`-D` defines.

BTF layout (include/uapi/linux/btf.h): a header (magic 0xEB9F, version, flags,
hdr_len, then offsets and lengths of the type and string sections, both counted
from the end of the header); the type section is a sequence of records, type id
1 first, each a 12-byte common part (name offset, info word, size-or-type)
followed by kind-specific data whose length depends on the kind and on `vlen`;
the string section is NUL-terminated names addressed by byte offset.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterable

VMLINUX_BTF = "/sys/kernel/btf/vmlinux"

_MAGIC = 0xEB9F
_HEADER_FIELDS = "HBBIIIII"  # magic, version, flags, hdr_len, type_off, type_len, str_off, str_len
_COMMON_RECORD_SIZE = 12

_KIND_INT = 1
_KIND_STRUCT = 4
_KIND_UNION = 5
_COMPOSITE_KINDS = (_KIND_STRUCT, _KIND_UNION)
# Kinds that only qualify or rename another type: TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG.
_ALIAS_KINDS = (8, 9, 10, 11, 18)

# Bytes after the common record, per kind, as (fixed, per vlen item). Index = kind;
# None marks a kind this reader does not know, whose length it cannot skip.
_TRAILER_SIZES: tuple[tuple[int, int] | None, ...] = (
    None,     # 0: unused
    (4, 0),   # 1: INT, one u32 of encoding / bit offset / bit count
    (0, 0),   # 2: PTR
    (12, 0),  # 3: ARRAY, struct btf_array
    (0, 12),  # 4: STRUCT, struct btf_member each
    (0, 12),  # 5: UNION, struct btf_member each
    (0, 8),   # 6: ENUM, struct btf_enum each
    (0, 0),   # 7: FWD
    (0, 0),   # 8: TYPEDEF
    (0, 0),   # 9: VOLATILE
    (0, 0),   # 10: CONST
    (0, 0),   # 11: RESTRICT
    (0, 0),   # 12: FUNC
    (0, 8),   # 13: FUNC_PROTO, struct btf_param each
    (4, 0),   # 14: VAR, struct btf_var
    (0, 12),  # 15: DATASEC, struct btf_var_secinfo each
    (0, 0),   # 16: FLOAT
    (4, 0),   # 17: DECL_TAG, struct btf_decl_tag
    (0, 0),   # 18: TYPE_TAG
    (0, 12),  # 19: ENUM64, struct btf_enum64 each
)


class BtfError(Exception):
    """A BTF blob is malformed, or a struct or member cannot be located in it."""


def _kind(info: int) -> int:
    return (info >> 24) & 0x1F


def _vlen(info: int) -> int:
    return info & 0xFFFF


def _has_bitfield_offsets(info: int) -> bool:
    """kind_flag on a STRUCT/UNION: member offsets carry the bitfield size in the top 8 bits."""
    return bool(info >> 31)


class Btf:
    """One parsed BTF blob: record positions by type id and composites by name."""

    def __init__(self, blob: bytes, origin: str = "<bytes>"):
        self._blob = blob
        self._origin = origin
        byte_order = self._byte_order()
        self._three_u32 = struct.Struct(byte_order + "III")
        self._one_u32 = struct.Struct(byte_order + "I")
        header = struct.Struct(byte_order + _HEADER_FIELDS)
        if len(blob) < header.size:
            raise BtfError(f"{origin}: too short for a BTF header")
        _, _, _, hdr_len, type_off, type_len, str_off, str_len = header.unpack_from(blob)
        self._types_start = hdr_len + type_off
        self._types_end = self._types_start + type_len
        self._strings_start = hdr_len + str_off
        if max(self._types_end, self._strings_start + str_len) > len(blob):
            raise BtfError(f"{origin}: sections run past the end of the file")
        self._record_positions = [0]  # type id 0 is void and has no record
        self._composite_ids_by_name: dict[str, int] = {}
        self._index_records()

    def _byte_order(self) -> str:
        for byte_order in "<>":
            if struct.unpack_from(byte_order + "H", self._blob)[0] == _MAGIC:
                return byte_order
        raise BtfError(f"{self._origin}: not BTF (no 0xEB9F magic)")

    def _index_records(self) -> None:
        # The hot loop of the parse (vmlinux has ~100K records): locals on purpose.
        unpack = self._three_u32.unpack_from
        blob = self._blob
        positions = self._record_positions
        names = self._composite_ids_by_name
        position = self._types_start
        while position < self._types_end:
            positions.append(position)
            name_off, info, _ = unpack(blob, position)
            kind = _kind(info)
            trailer = _TRAILER_SIZES[kind] if kind < len(_TRAILER_SIZES) else None
            if trailer is None:
                raise BtfError(f"{self._origin}: unknown BTF kind {kind} at type id {len(positions) - 1}")
            if kind in _COMPOSITE_KINDS and name_off:
                names.setdefault(self._string(name_off), len(positions) - 1)
            fixed, per_item = trailer
            position += _COMMON_RECORD_SIZE + fixed + per_item * _vlen(info)
        if position != self._types_end:
            raise BtfError(f"{self._origin}: last type record overruns the type section")

    def _string(self, offset: int) -> str:
        start = self._strings_start + offset
        return self._blob[start:self._blob.index(b"\0", start)].decode()

    def _record(self, type_id: int) -> tuple[int, int, int, int]:
        """(name offset, info, size or referenced type, position of the record)."""
        if not 0 < type_id < len(self._record_positions):
            raise BtfError(f"{self._origin}: reference to missing type id {type_id}")
        position = self._record_positions[type_id]
        return (*self._three_u32.unpack_from(self._blob, position), position)

    def _strip_aliases(self, type_id: int) -> int:
        while type_id:
            _, info, referenced, _ = self._record(type_id)
            if _kind(info) not in _ALIAS_KINDS:
                break
            type_id = referenced
        return type_id

    def _members(self, type_id: int) -> Iterable[tuple[str, int, int, int]]:
        """(name, member type id, bit offset, bitfield size or 0) of each member."""
        _, info, _, position = self._record(type_id)
        carries_sizes = _has_bitfield_offsets(info)
        first = position + _COMMON_RECORD_SIZE
        for member_position in range(first, first + 12 * _vlen(info), 12):
            name_off, member_type, offset = self._three_u32.unpack_from(self._blob, member_position)
            if carries_sizes:
                yield self._string(name_off), member_type, offset & 0xFFFFFF, offset >> 24
            else:
                yield self._string(name_off), member_type, offset, 0

    def _is_partial_int(self, type_id: int) -> bool:
        """An INT narrower than its storage: how bitfields look without kind_flag."""
        _, info, size, position = self._record(self._strip_aliases(type_id))
        if _kind(info) != _KIND_INT:
            return False
        (encoding,) = self._one_u32.unpack_from(self._blob, position + _COMMON_RECORD_SIZE)
        bit_count, bit_offset = encoding & 0xFF, (encoding >> 16) & 0xFF
        return bit_offset != 0 or bit_count != size * 8

    def _member_bit_offset(self, type_id: int, member: str, path: str) -> int | None:
        """Bit offset of `member` in composite `type_id`, looking into anonymous
        struct/union members (whose own offset is added); None when absent."""
        for name, member_type, bit_offset, bitfield_size in self._members(type_id):
            if name == member:
                if bitfield_size or bit_offset % 8 or self._is_partial_int(member_type):
                    raise BtfError(f"{path}.{member} is a bitfield (bit offset {bit_offset}); "
                                   "it has no byte offset to read it at")
                return bit_offset
            if not name:
                inner = self._strip_aliases(member_type)
                if inner and _kind(self._record(inner)[1]) in _COMPOSITE_KINDS:
                    found = self._member_bit_offset(inner, member, path)
                    if found is not None:
                        return bit_offset + found
        return None

    def member_offset(self, struct_name: str, member: str) -> int:
        """Byte offset of a direct member of a struct or union (anonymous inner
        unions and structs included)."""
        type_id = self._composite_ids_by_name.get(struct_name)
        if type_id is None:
            raise BtfError(f"no struct or union named '{struct_name}' in {self._origin}")
        bit_offset = self._member_bit_offset(type_id, member, struct_name)
        if bit_offset is None:
            raise BtfError(f"struct {struct_name} has no member '{member}' in {self._origin} "
                           "(anonymous inner unions and structs were searched too)")
        return bit_offset // 8


def load(btf_path: str = VMLINUX_BTF) -> Btf:
    """The parsed BTF at `btf_path`, read once per process."""
    return _parse(btf_path)


@functools.cache
def _parse(btf_path: str) -> Btf:
    # The parse cache. Reached only through load() so that every caller hits the
    # same key (functools.cache tells load() apart from load(VMLINUX_BTF)).
    try:
        with open(btf_path, "rb") as btf_file:
            blob = btf_file.read()
    except OSError as error:
        raise BtfError(f"cannot read BTF: {error}") from error
    return Btf(blob, origin=btf_path)


def member_offset(struct_name: str, member: str, btf_path: str = VMLINUX_BTF) -> int:
    """Byte offset of `member` in `struct_name` according to the BTF at `btf_path`."""
    return load(btf_path).member_offset(struct_name, member)


def offsets(pairs: Iterable[tuple[str, str]], btf_path: str = VMLINUX_BTF) -> dict[str, int]:
    """Byte offsets of many (struct, member) pairs, keyed "struct.member"."""
    btf = load(btf_path)
    return {f"{struct_name}.{member}": btf.member_offset(struct_name, member)
            for struct_name, member in pairs}
