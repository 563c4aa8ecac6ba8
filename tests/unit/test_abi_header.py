"""ebpf/nsgraph.h and its Python mirror tracer/kernel/abi.py agree: constants, offsets, sizes.

Pure: the header's text and the host C compiler; tests/kernel/test_abi.py checks a
record the running kernel produced.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from tests.conftest import REPO, require
from tracer.kernel import abi

HEADER = os.path.join(REPO, "ebpf", "nsgraph.h")

# Every mirrored struct: C name -> the mirror's fields (explicit padding has no offsetof).
STRUCTS = {"nsg_event": abi.EVENT_FIELDS, "nsg_brief": abi.BRIEF_FIELDS, "nsg_ns_change": abi.CHANGE_FIELDS,
           "nsg_exec_tail": abi.EXEC_TAIL_FIELDS}


def header_defines():
    with open(HEADER) as f:
        text = f.read()
    return {m.group(1): int(m.group(2), 0) for m in re.finditer(r"#define\s+(NSG_\w+)\s+(\d+|0x[0-9a-fA-F]+)\b", text)}


def test_constants_match_the_header():
    d = header_defines()
    assert d["NSG_ABI_VERSION"] == abi.ABI_VERSION
    assert d["NSG_COMM_LEN"] == abi.COMM_LEN and d["NSG_PATH_LEN"] == abi.PATH_LEN
    assert d["NSG_NS_COUNT"] == abi.NS_COUNT
    for i, name in enumerate(abi.NS_SLOTS):
        assert d["NSG_NS_" + name.upper()] == i
    for code, name in abi.KIND_NAMES.items():
        assert d["NSG_KIND_" + name.upper()] == code
    for code, name in abi.SYSCALL_NAMES.items():
        assert d["NSG_SYS_" + (name or "none").upper()] == code
    assert d["NSG_CNT_RINGBUF_FULL"] == abi.CNT_RINGBUF_FULL
    assert d["NSG_CNT_PENDING_FULL"] == abi.CNT_PENDING_FULL
    assert d["NSG_CNT_EVENTS"] == abi.CNT_EVENTS
    assert d["NSG_CNT_SLOTS"] == abi.CNT_SLOTS
    assert d["NSG_INFO_BRIEF"] == abi.INFO_BRIEF
    assert d["NSG_INFO_FLAGS_SEEN"] == abi.INFO_FLAGS_SEEN
    assert d["NSG_INFO_CLONE_PARENT"] == abi.INFO_CLONE_PARENT


def test_c_compiler_agrees_on_every_offset(tmp_path):
    """Compile the header with the host C compiler and compare each offsetof() and sizeof()."""
    cc = shutil.which("cc") or shutil.which("gcc")
    require(cc is not None, "no C compiler (apt-get install gcc)")
    program = tmp_path / "layout.c"
    lines = ["#include <stdio.h>", "#include <stddef.h>", "#include <stdint.h>",
             "typedef uint8_t __u8; typedef uint16_t __u16; typedef uint32_t __u32; typedef uint64_t __u64;",
             "typedef int32_t __s32; typedef int64_t __s64;", '#include "%s"' % HEADER, "int main(void) {",
             '  printf("record_max %zu\\n", (size_t)NSG_RECORD_MAX);']
    for struct_name, fields in STRUCTS.items():
        lines.append('  printf("%s.sizeof %%zu\\n", sizeof(struct %s));' % (struct_name, struct_name))
        lines += ['  printf("%s.%s %%zu\\n", offsetof(struct %s, %s));' % (struct_name, f, struct_name, f)
                  for f, code in fields if not code.endswith("x")]
    lines += ["  return 0;", "}"]
    program.write_text("\n".join(lines))
    binary = tmp_path / "layout"
    subprocess.run([cc, "-o", str(binary), str(program)], check=True)
    out = subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout
    c_layout = {k: int(v) for k, v in (line.split() for line in out.splitlines())}
    assert c_layout["record_max"] == abi.RECORD_MAX
    sizes = {"nsg_event": abi.EVENT_SIZE, "nsg_brief": abi.BRIEF_SIZE, "nsg_ns_change": abi.CHANGE_SIZE, "nsg_exec_tail": abi.EXEC_TAIL_SIZE}
    for struct_name, fields in STRUCTS.items():
        assert c_layout[struct_name + ".sizeof"] == sizes[struct_name]
        mirror = {f: off for f, off in abi.field_offsets(fields).items()
                  if not dict(fields)[f].endswith("x")}
        assert {f: c_layout["%s.%s" % (struct_name, f)] for f in mirror} == mirror
