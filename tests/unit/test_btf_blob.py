"""BTF offset resolution (tracer/kernel/btf.py) on synthetic blobs: anonymous unions and
structs, nested paths, bitfields, malformed input.  The running kernel's BTF, checked
against bpftool's reading of it, is in tests/kernel/test_btf.py."""

from __future__ import annotations

import struct

import pytest

from tracer.kernel.btf import BTF, BTFError


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

    def func(self, name, proto=0):
        return self.add(struct.pack("<III", self.name(name), 12 << 24, proto))

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


def test_functions_are_found_by_name_and_kind():
    """fentry attaches to a FUNC's type id (tracer/kernel/fentry.py)."""
    b = BTFBuilder()
    b.composite(4, "free_nsproxy", 8, [])               # a struct of the same name is not it
    first = b.func("switch_task_namespaces")
    second = b.func("free_nsproxy")
    btf = BTF(b.blob())
    assert btf.func_id("free_nsproxy") == second
    assert btf.func_id("switch_task_namespaces") == first
    for absent in ("free_nsprox", "nsproxy", "missing"):      # substrings of a name are not names
        assert btf.func_id(absent) is None


def test_typedefs_are_found_by_whole_name_and_kind():
    """tp_btf attaches to tracepoint X through the typedef btf_trace_X (tracer/kernel/tpbtf.py)."""
    b = BTFBuilder()
    b.func("btf_trace_sched_process_fork")               # a FUNC of the same name is not it
    u32 = b.int_type("unsigned int", 4)
    fork = b.typedef("btf_trace_sched_process_fork", u32)
    exit_ = b.typedef("btf_trace_sched_process_exit", u32)
    btf = BTF(b.blob())
    assert btf.typedef_id("btf_trace_sched_process_fork") == fork
    assert btf.typedef_id("btf_trace_sched_process_exit") == exit_
    for absent in ("btf_trace_sched_process", "sched_process_fork", "btf_trace_sched_process_exec"):
        assert btf.typedef_id(absent) is None
