"""The Python mirror of ebpf/nsgraph.h: event layout, kind and syscall codes, counters.

This is the only Python module that knows the binary layout.  tests/kernel/test_abi.py
parses the C header and checks the constants and the struct size against this
file, and the live-event test checks the size the kernel side compiled.
"""

from __future__ import annotations

import struct

from ..nstypes import NS_SLOTS

ABI_VERSION = 3
COMM_LEN = 16
PATH_LEN = 96
ARGS_LEN = 128

# Slot order of struct nsg_ns_set (NSG_NS_*): the vocabulary module owns it.
NS_COUNT = len(NS_SLOTS)

KIND_CLONE = 1
KIND_UNSHARE = 2
KIND_SETNS = 3
KIND_EXEC = 4
KIND_EXIT = 5
KIND_NAMES = {KIND_CLONE: "clone", KIND_UNSHARE: "unshare", KIND_SETNS: "setns",
              KIND_EXEC: "exec", KIND_EXIT: "exit"}

SYS_NONE = 0
SYS_CLONE = 1
SYS_CLONE3 = 2
SYS_UNSHARE = 3
SYS_SETNS = 4
SYSCALL_NAMES = {SYS_NONE: None, SYS_CLONE: "clone", SYS_CLONE3: "clone3",
                 SYS_UNSHARE: "unshare", SYS_SETNS: "setns"}

CNT_RINGBUF_FULL = 0
CNT_PENDING_FULL = 1
CNT_EVENTS = 2
CNT_SLOTS = 4

# struct nsg_event, field by field, in C order.  Natural alignment with no implicit
# padding (x86-64 and arm64 agree on it); "pad" is the explicit __u8 pad[3].
_NS_SET = "%dQ%dI" % (NS_COUNT, NS_COUNT)
EVENT_FIELDS = (
    ("size", "H"), ("version", "B"), ("kind", "B"), ("syscall", "B"), ("pad", "3x"),
    ("ts_boot_ns", "Q"), ("pid", "I"), ("tid", "I"), ("ppid", "I"), ("uid", "I"), ("vpid", "I"),
    ("child_pid", "I"), ("child_vpid", "I"), ("fd", "i"), ("exit_code", "i"), ("args_len", "I"),
    ("flags", "Q"), ("ret", "q"), ("cgroup_id", "Q"), ("comm", "%ds" % COMM_LEN), ("filename", "%ds" % PATH_LEN),
    ("args", "%ds" % ARGS_LEN),
    ("before", _NS_SET), ("after", _NS_SET),
)
EVENT_FORMAT = "<" + "".join(code for _name, code in EVENT_FIELDS)
EVENT = struct.Struct(EVENT_FORMAT)


def field_offsets() -> dict:
    """Byte offset of each field of struct nsg_event, as this mirror lays it out."""
    offsets = {}
    prefix = "<"
    for name, code in EVENT_FIELDS:
        offsets[name] = struct.calcsize(prefix)
        prefix += code
    return offsets


EVENT_SIZE = EVENT.size  # sizeof(struct nsg_event)
