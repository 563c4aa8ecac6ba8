"""BTF offset resolution on the running kernel, checked against bpftool's independent
reading of /sys/kernel/btf/vmlinux (synthetic blobs: tests/unit/test_btf_blob.py)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from tests.conftest import require
from tracer.kernel.btf import BTF
from tracer.kernel.probes import OPTIONAL_OFFSETS, REQUIRED_OFFSETS


def bpftool_dump():
    """bpftool's own raw dump of the kernel's BTF (the helpers below read structs from it)."""
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


def test_every_probe_offset_matches_bpftool():
    """Reads /sys/kernel/btf/vmlinux (world-readable): no root needed, but the running kernel is."""
    require(shutil.which("bpftool") is not None, "bpftool is not installed (apt-get install bpftool)")
    require(os.path.exists("/sys/kernel/btf/vmlinux"), "kernel has no BTF")
    dump = bpftool_dump()
    btf = BTF.from_file()
    wanted = list(REQUIRED_OFFSETS) + [m for group in OPTIONAL_OFFSETS.values() for m in group]
    checked = 0
    for _macro, struct_name, member in wanted:
        ours = btf.member_offset(struct_name, member) if btf.has_member(struct_name, member) else None
        theirs = _bpftool_offset(dump, struct_name, member) if btf.has_struct(struct_name) else None
        assert ours == theirs, (struct_name, member)
        checked += ours is not None
    assert checked >= len(REQUIRED_OFFSETS)
