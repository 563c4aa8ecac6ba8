"""BTF offset resolution: a synthetic blob (no root) and the running kernel's BTF,
checked against bpftool's independent reading of it."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess

import pytest

from tests.conftest import require
from tracer.kernel.btf import BTF, BTFError
from tracer.kernel.layout import OPTIONAL_OFFSETS, REQUIRED_OFFSETS


class BTFBuilder:
    """Writes a minimal BTF blob: just enough kinds to exercise member lookup."""

    def __init__(self):
        self.strings = b"\0"
        self.types = b""
        self.count = 0

    def name(self, text):
        if not text:
            return 0
        offset = len(self.strings)
        self.strings += text.encode() + b"\0"
        return offset

    def add(self, record):
        self.types += record
        self.count += 1
        return self.count

    def int_type(self, name, size):
        return self.add(struct.pack("<III", self.name(name), 1 << 24, size) + struct.pack("<I", size * 8))

    def typedef(self, name, target):
        return self.add(struct.pack("<III", self.name(name), 8 << 24, target))

    def composite(self, kind, name, size, members, kind_flag=False):
        info = (kind << 24) | len(members) | (1 << 31 if kind_flag else 0)
        body = b"".join(struct.pack("<III", self.name(m), t, off) for m, t, off in members)
        return self.add(struct.pack("<III", self.name(name), info, size) + body)

    def blob(self):
        header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(self.types), len(self.types), len(self.strings))
        return header + self.types + self.strings


def ns_common_like():
    """struct ns_common { u32 ns_type; u32 inum; union { struct { u64 ns_id; u64 node; }; u64 rcu; }; }"""
    b = BTFBuilder()
    u32 = b.int_type("unsigned int", 4)
    u64 = b.int_type("long long unsigned int", 8)
    u64_t = b.typedef("u64", u64)
    inner = b.composite(4, "", 16, [("ns_id", u64_t, 0), ("node", u64, 64)])
    union = b.composite(5, "", 16, [("", inner, 0), ("rcu", u64, 0)])
    common = b.composite(4, "ns_common", 24, [("ns_type", u32, 0), ("inum", u32, 32), ("", union, 64)])
    # A struct with a bitfield (kind_flag: size in the top byte of the offset).
    b.composite(4, "flags_holder", 8, [("a", u32, (3 << 24) | 0), ("b", u32, (5 << 24) | 3), ("c", u32, 32)],
                kind_flag=True)
    # Nested named member path.
    holder = b.composite(4, "outer", 32, [("pad", u64, 0), ("common", common, 64)])
    return b.blob(), holder


def test_members_inside_anonymous_unions_and_structs():
    blob, _ = ns_common_like()
    btf = BTF(blob)
    assert btf.member_offset("ns_common", "ns_type") == 0
    assert btf.member_offset("ns_common", "inum") == 4
    assert btf.member_offset("ns_common", "ns_id") == 8     # struct -> anon union -> anon struct
    assert btf.member_offset("ns_common", "node") == 16
    assert btf.member_offset("ns_common", "rcu") == 8
    assert btf.struct_size("ns_common") == 24
    assert btf.has_member("ns_common", "ns_id")
    assert not btf.has_member("ns_common", "missing")


def test_nested_paths_and_bitfields():
    blob, _ = ns_common_like()
    btf = BTF(blob)
    assert btf.member_offset("flags_holder", "c") == 4
    assert btf.member_offset("flags_holder", "a") == 0
    with pytest.raises(BTFError, match="bitfield"):
        btf.member_offset("flags_holder", "b")
    assert btf.member_offset("outer", "common.ns_id") == 16


def test_errors_name_what_is_missing():
    blob, _ = ns_common_like()
    btf = BTF(blob)
    with pytest.raises(BTFError, match="no struct or union named 'task_struct'"):
        btf.member_offset("task_struct", "pid")
    with pytest.raises(BTFError, match="no member 'nsproxy'"):
        btf.member_offset("ns_common", "nsproxy")


@pytest.mark.parametrize("mangle", [
    lambda b: b[:10],                                   # shorter than the header
    lambda b: b"\x00\x00" + b[2:],                      # wrong magic
    lambda b: b[:2] + b"\x02" + b[3:],                  # unknown version
    lambda b: b[:40],                                   # sections past the end
    lambda b: b[:24] + b"\xff" * 12 + b[36:],            # garbage kind
])
def test_malformed_blobs_raise_btf_error(mangle):
    blob, _ = ns_common_like()
    with pytest.raises(BTFError):
        BTF(mangle(blob))


def test_unreadable_file():
    with pytest.raises(BTFError, match="cannot read"):
        BTF.from_file("/nonexistent/vmlinux")


def bpftool_members(struct_name):
    """bpftool's own view: {member: bit offset} of one struct, plus anonymous members' type ids."""
    out = subprocess.run(["bpftool", "btf", "dump", "file", "/sys/kernel/btf/vmlinux", "format", "raw"],
                         capture_output=True, text=True, check=True).stdout
    return out


def _bpftool_struct(dump, type_id=None, name=None):
    if type_id is not None:
        pattern = r"^\[%d\] (?:STRUCT|UNION) '[^']*' size=\d+ vlen=\d+\n((?:\t.*\n)*)" % type_id
    else:
        pattern = r"^\[\d+\] STRUCT '%s' size=\d+ vlen=\d+\n((?:\t.*\n)*)" % re.escape(name)
    m = re.search(pattern, dump, re.M)
    assert m, (type_id, name)
    members = []
    for line in m.group(1).splitlines():
        mm = re.match(r"\t'([^']*)' type_id=(\d+) bits_offset=(\d+)", line)
        members.append((mm.group(1), int(mm.group(2)), int(mm.group(3))))
    return members


def _bpftool_offset(dump, struct_name, member):
    """Walk bpftool's raw dump, descending into anonymous members, like C does."""
    def search(members):
        for name, type_id, bits in members:
            if name == member:
                return bits
        for name, type_id, bits in members:
            if name == "(anon)":
                try:
                    inner = _bpftool_struct(dump, type_id=type_id)
                except AssertionError:
                    continue
                found = search(inner)
                if found is not None:
                    return bits + found
        return None
    bits = search(_bpftool_struct(dump, name=struct_name))
    return None if bits is None else bits // 8


def test_every_probe_offset_matches_bpftool(root):
    require(shutil.which("bpftool") is not None, "bpftool is not installed (apt-get install bpftool)")
    require(os.path.exists("/sys/kernel/btf/vmlinux"), "kernel has no BTF")
    dump = bpftool_members(None)
    btf = BTF.from_file()
    wanted = list(REQUIRED_OFFSETS) + [m for group in OPTIONAL_OFFSETS.values() for m in group]
    checked = 0
    for _macro, struct_name, member in wanted:
        ours = btf.member_offset(struct_name, member) if btf.has_member(struct_name, member) else None
        theirs = _bpftool_offset(dump, struct_name, member) if btf.has_struct(struct_name) else None
        assert ours == theirs, (struct_name, member)
        checked += ours is not None
    assert checked >= len(REQUIRED_OFFSETS)
