"""The Python mirror of ebpf/nsgraph.h: record layout, kind and syscall codes, counters.

This is the only Python module that knows the binary layout.  tests/kernel/test_abi.py
parses the C header and checks the constants and the struct size against this
file, and the live-event test checks the size the kernel side compiled.
"""

from __future__ import annotations

import struct

from ..nstypes import NS_SLOTS

ABI_VERSION = 6
COMM_LEN = 16
PATH_LEN = 96
ARGS_LEN = 128

# Slot order of the NSG_NS_* slot numbers: the vocabulary module owns it.
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

INFO_BRIEF = 1          # a plain fork or an exit: the record is a struct nsg_brief
INFO_FLAGS_SEEN = 2     # a clone whose flags come from the system call itself
INFO_CLONE_PARENT = 4   # a brief fork whose child is its grandparent's (CLONE_PARENT)

CNT_RINGBUF_FULL = 0
CNT_PENDING_FULL = 1
CNT_EVENTS = 2
CNT_SLOTS = 4

GATE_READER_ASLEEP = 1  # nsgraph.bpf.c's gates slot a reader sets before it sleeps (ringbuf.py)

# struct nsg_event, field by field, in C order.  Natural alignment with no implicit
# padding (x86-64 and arm64 agree on it).  Every record starts with it; then come
# `nchanges` struct nsg_ns_change and, for exec, struct nsg_exec_tail.
EVENT_FIELDS = (
    ("size", "H"), ("version", "B"), ("kind", "B"), ("syscall", "B"), ("nchanges", "B"), ("info", "H"),
    ("ts_ns", "Q"), ("pid", "I"), ("tid", "I"), ("ppid", "I"), ("uid", "I"), ("vpid", "I"),
    ("child_pid", "I"), ("child_vpid", "I"), ("fd", "i"), ("exit_code", "i"), ("args_len", "I"),
    ("flags", "Q"), ("ret", "q"), ("cgroup_id", "Q"), ("comm", "%ds" % COMM_LEN),
)
EVENT_FORMAT = "<" + "".join(code for _name, code in EVENT_FIELDS)
EVENT = struct.Struct(EVENT_FORMAT)

# struct nsg_brief: a plain fork or an exit, the whole record.  Its first 16 bytes are
# nsg_event's.
BRIEF_FIELDS = (
    ("size", "H"), ("version", "B"), ("kind", "B"), ("syscall", "B"), ("nchanges", "B"), ("info", "H"),
    ("ts_ns", "Q"), ("pid", "I"), ("tid", "I"), ("child_pid", "I"), ("exit_code", "i"),
    ("comm", "%ds" % COMM_LEN),
)
BRIEF = struct.Struct("<" + "".join(code for _name, code in BRIEF_FIELDS))

# struct nsg_ns_change: one namespace slot an event changed.
CHANGE_FIELDS = (("id_before", "Q"), ("id_after", "Q"), ("inum_before", "I"), ("inum_after", "I"),
                 ("slot", "B"), ("pad", "7x"))
CHANGE = struct.Struct("<" + "".join(code for _name, code in CHANGE_FIELDS))

# struct nsg_exec_tail: what an exec record adds after its changes.
EXEC_TAIL_FIELDS = (("filename", "%ds" % PATH_LEN), ("args", "%ds" % ARGS_LEN))
EXEC_TAIL = struct.Struct("<" + "".join(code for _name, code in EXEC_TAIL_FIELDS))


def field_offsets(fields=EVENT_FIELDS) -> dict:
    """Byte offset of each field of a mirrored struct, as this mirror lays it out."""
    offsets = {}
    prefix = "<"
    for name, code in fields:
        offsets[name] = struct.calcsize(prefix)
        prefix += code
    return offsets


EVENT_SIZE = EVENT.size  # sizeof(struct nsg_event): every full record's start
BRIEF_SIZE = BRIEF.size  # sizeof(struct nsg_brief): a whole brief record, shorter than any full one
CHANGE_SIZE = CHANGE.size
EXEC_TAIL_SIZE = EXEC_TAIL.size
RECORD_MAX = EVENT_SIZE + NS_COUNT * CHANGE_SIZE + EXEC_TAIL_SIZE
