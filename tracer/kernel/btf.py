"""Read struct layouts from the running kernel's BTF (/sys/kernel/btf/vmlinux).

BCC compiles against whatever header tree is installed, and on a machine whose
headers belong to another kernel those layouts are wrong (ns_common.inum moved from
byte 16 in 6.1 to byte 24 in 6.18).  The probes therefore never dereference a
struct member by name: every offset they use is resolved here, from the kernel's
own type information, and handed to the C code as a constant.

Only the small part of the BTF format needed for member offsets and struct sizes
is decoded (see Documentation/bpf/btf.rst).
"""

from __future__ import annotations

import struct
from typing import Optional

VMLINUX_BTF = "/sys/kernel/btf/vmlinux"

BTF_MAGIC = 0xEB9F

KIND_INT = 1
KIND_PTR = 2
KIND_ARRAY = 3
KIND_STRUCT = 4
KIND_UNION = 5
KIND_ENUM = 6
KIND_FWD = 7
KIND_TYPEDEF = 8
KIND_VOLATILE = 9
KIND_CONST = 10
KIND_RESTRICT = 11
KIND_FUNC = 12
KIND_FUNC_PROTO = 13
KIND_VAR = 14
KIND_DATASEC = 15
KIND_FLOAT = 16
KIND_DECL_TAG = 17
KIND_TYPE_TAG = 18
KIND_ENUM64 = 19

# Bytes that follow the 12-byte common header, as (fixed, per vlen entry).
_TRAILER = {
    KIND_INT: (4, 0),
    KIND_ARRAY: (12, 0),
    KIND_STRUCT: (0, 12),
    KIND_UNION: (0, 12),
    KIND_ENUM: (0, 8),
    KIND_FUNC_PROTO: (0, 8),
    KIND_VAR: (4, 0),
    KIND_DATASEC: (0, 12),
    KIND_DECL_TAG: (4, 0),
    KIND_ENUM64: (0, 12),
}

_MODIFIERS = (KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG)

_HEADER = struct.Struct("<HBBIIIII")
_TYPE = struct.Struct("<III")
_MEMBER = struct.Struct("<III")


class BTFError(Exception):
    """The BTF blob is unreadable, or lacks a type or member that was asked for."""


class BTF:
    """An index of the named structs and unions of one BTF blob."""

    def __init__(self, data: bytes):
        if len(data) < _HEADER.size:
            raise BTFError("BTF data is too short (%d bytes)" % len(data))
        magic, version, _flags, hdr_len, type_off, type_len, str_off, str_len = _HEADER.unpack_from(data)
        if magic != BTF_MAGIC:
            raise BTFError("not BTF data (magic 0x%04x, expected 0x%04x)" % (magic, BTF_MAGIC))
        if version != 1:
            raise BTFError("unsupported BTF version %d" % version)
        self._data = data
        self._types_start = hdr_len + type_off
        self._types_end = self._types_start + type_len
        self._strings_start = hdr_len + str_off
        self._strings_end = self._strings_start + str_len
        if self._types_end > len(data) or self._strings_end > len(data):
            raise BTFError("BTF sections run past the end of the data")
        # _positions[type_id] is the byte position of that type's record; id 0 is void.
        self._positions: list[int] = [-1]
        self._by_name: dict[str, int] = {}
        self._func_offsets: dict[int, int] = {}  # name_off -> first FUNC id with that name
        self._funcs: Optional[dict] = None
        self._index()

    @classmethod
    def from_file(cls, path: str = VMLINUX_BTF) -> "BTF":
        try:
            with open(path, "rb") as f:
                return cls(f.read())
        except OSError as exc:
            raise BTFError("cannot read %s: %s" % (path, exc.strerror)) from exc

    def _string(self, offset: int) -> str:
        start = self._strings_start + offset
        end = self._data.index(b"\0", start, self._strings_end)
        return self._data[start:end].decode("ascii", "replace")

    def _index(self) -> None:
        data = self._data
        unpack = _TYPE.unpack_from
        pos = self._types_start
        end = self._types_end
        positions = self._positions
        composite_names: dict[int, int] = {}  # name_off -> first struct/union id with that name
        type_id = 0
        while pos < end:
            if pos + 12 > end:
                raise BTFError("truncated BTF type record at byte %d" % pos)
            name_off, info, _size = unpack(data, pos)
            type_id += 1
            positions.append(pos)
            kind = (info >> 24) & 0x1F
            vlen = info & 0xFFFF
            fixed, per_entry = _TRAILER.get(kind, (0, 0))
            if kind > KIND_ENUM64 or kind == 0:
                raise BTFError("unknown BTF kind %d at byte %d" % (kind, pos))
            if (kind == KIND_STRUCT or kind == KIND_UNION) and name_off:
                composite_names.setdefault(name_off, type_id)
            elif kind == KIND_FUNC and name_off:
                self._func_offsets.setdefault(name_off, type_id)
            pos += 12 + fixed + per_entry * vlen
        for name_off, tid in composite_names.items():
            self._by_name.setdefault(self._string(name_off), tid)

    # -- type access -------------------------------------------------------

    def _record(self, type_id: int):
        if type_id <= 0 or type_id >= len(self._positions):
            raise BTFError("BTF type id %d out of range" % type_id)
        pos = self._positions[type_id]
        name_off, info, size_or_type = _TYPE.unpack_from(self._data, pos)
        return pos, name_off, (info >> 24) & 0x1F, info & 0xFFFF, bool(info >> 31), size_or_type

    def _strip(self, type_id: int) -> int:
        """Follow typedefs and qualifiers to the underlying type."""
        for _ in range(64):
            _pos, _n, kind, _v, _kf, ref = self._record(type_id)
            if kind not in _MODIFIERS:
                return type_id
            type_id = ref
        raise BTFError("typedef chain too long at type %d" % type_id)

    def has_struct(self, name: str) -> bool:
        return name in self._by_name

    def struct_id(self, name: str) -> int:
        try:
            return self._by_name[name]
        except KeyError:
            raise BTFError("kernel BTF has no struct or union named %r" % name) from None

    def struct_size(self, name: str) -> int:
        return self._record(self.struct_id(name))[5]

    def _members(self, type_id: int):
        pos, _n, kind, vlen, kind_flag, _size = self._record(type_id)
        if kind not in (KIND_STRUCT, KIND_UNION):
            raise BTFError("BTF type %d is not a struct or union" % type_id)
        for i in range(vlen):
            m_name, m_type, m_offset = _MEMBER.unpack_from(self._data, pos + 12 + 12 * i)
            bit_offset = m_offset & 0xFFFFFF if kind_flag else m_offset
            yield m_name, m_type, bit_offset

    def _find_member(self, type_id: int, name: str):
        """(bit offset, member type id) of `name`, looking inside anonymous members."""
        anonymous = []
        for m_name, m_type, bit_offset in self._members(type_id):
            if m_name == 0:
                anonymous.append((m_type, bit_offset))
            elif self._string(m_name) == name:
                return bit_offset, m_type
        for m_type, bit_offset in anonymous:
            inner = self._strip(m_type)
            if self._record(inner)[2] in (KIND_STRUCT, KIND_UNION):
                found = self._find_member(inner, name)
                if found is not None:
                    return bit_offset + found[0], found[1]
        return None

    def member_offset(self, struct_name: str, member_path: str) -> int:
        """Byte offset of a member, e.g. member_offset("ns_common", "ns_id").

        `member_path` may name nested members with dots ("signal.live" is not a
        path: pointers are not followed; "a.b" means member b of the struct that is
        member a).  Members of anonymous structs and unions are found as if they
        were members of the enclosing struct, as C does.
        """
        type_id = self.struct_id(struct_name)
        total_bits = 0
        parts = member_path.split(".")
        for i, part in enumerate(parts):
            found = self._find_member(type_id, part)
            if found is None:
                raise BTFError("struct %s has no member %r in the running kernel's BTF"
                               % (struct_name, ".".join(parts[: i + 1])))
            bits, member_type = found
            total_bits += bits
            type_id = self._strip(member_type)
        if total_bits % 8:
            raise BTFError("%s.%s is a bitfield; it has no byte offset" % (struct_name, member_path))
        return total_bits // 8

    def func_names(self) -> dict:
        """type id -> name of every FUNC (a BPF program's BTF names its functions)."""
        return {type_id: self._string(name_off) for name_off, type_id in self._func_offsets.items()}

    def func_id(self, name: str) -> Optional[int]:
        """The BTF id of the kernel function `name` (what fentry attaches to), or None."""
        # The name's own string first (a search of the string section, ~1 ms): naming all
        # ~60 000 functions took 0.12 s of every start-up.  The full map only when the
        # name is not there as a string of its own (a blob whose strings share tails).
        needle = b"\0" + name.encode("ascii", "replace") + b"\0"
        at = self._data.find(needle, self._strings_start, self._strings_end)
        while at >= 0:
            type_id = self._func_offsets.get(at + 1 - self._strings_start)
            if type_id is not None:
                return type_id
            at = self._data.find(needle, at + 1, self._strings_end)
        if self._funcs is None:
            self._funcs = {self._string(off): tid for off, tid in self._func_offsets.items()}
        return self._funcs.get(name)

    def typedef_id(self, name: str) -> Optional[int]:
        """The BTF id of the typedef `name`, or None.  A tp_btf program attaches to
        tracepoint X through the typedef btf_trace_X; looked up on demand (one pass)."""
        needle = b"\0" + name.encode("ascii") + b"\0"
        offsets = set()    # every copy of the string (vmlinux's BTF has one; others may not dedupe)
        at = self._data.find(needle, self._strings_start, self._strings_end)
        while at >= 0:
            offsets.add(at + 1 - self._strings_start)
            at = self._data.find(needle, at + 1, self._strings_end)
        for type_id in range(1, len(self._positions)) if offsets else ():
            got_off, info, _size = _TYPE.unpack_from(self._data, self._positions[type_id])
            if got_off in offsets and (info >> 24) & 0x1F == KIND_TYPEDEF:
                return type_id
        return None

    def has_member(self, struct_name: str, member_path: str) -> bool:
        try:
            self.member_offset(struct_name, member_path)
            return True
        except BTFError:
            return False

