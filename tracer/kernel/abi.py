"""The Python mirror of ebpf/nsgraph.h: event layout, kinds and flag names.

This is the only Python module that knows the binary layout.  tests/test_abi.py
parses the C header and checks the constants and the struct size against this
file, and the live-event test checks the size the kernel side compiled.
"""

from __future__ import annotations

import struct

ABI_VERSION = 3
COMM_LEN = 16
PATH_LEN = 96
ARGS_LEN = 128

# Slot order of struct nsg_ns_set (NSG_NS_*).
NS_SLOTS = (
    "mnt",
    "pid",
    "pid_for_children",
    "net",
    "uts",
    "ipc",
    "user",
    "cgroup",
    "time",
    "time_for_children",
)
NS_COUNT = len(NS_SLOTS)

# The namespace types a process is a member of (the *_for_children slots are
# where its future children go, not memberships).
MEMBER_TYPES = ("mnt", "pid", "net", "uts", "ipc", "user", "cgroup", "time")

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

# Namespace flags shared by clone, clone3 and unshare, and setns's nstype.
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

NS_FLAG_TYPES = {
    CLONE_NEWNS: "mnt",
    CLONE_NEWCGROUP: "cgroup",
    CLONE_NEWUTS: "uts",
    CLONE_NEWIPC: "ipc",
    CLONE_NEWUSER: "user",
    CLONE_NEWPID: "pid",
    CLONE_NEWNET: "net",
    CLONE_NEWTIME: "time",
}
NS_FLAGS_MASK = 0
for _flag in NS_FLAG_TYPES:
    NS_FLAGS_MASK |= _flag
TYPE_FLAGS = {name: flag for flag, name in NS_FLAG_TYPES.items()}

# All clone flags, for display.  CLONE_NEWTIME shares its bit with CSIGNAL's
# range in clone(), where the low byte is the exit signal; see decode_clone_flags.
CLONE_FLAG_NAMES = {
    0x00000100: "CLONE_VM",
    0x00000200: "CLONE_FS",
    0x00000400: "CLONE_FILES",
    0x00000800: "CLONE_SIGHAND",
    0x00001000: "CLONE_PIDFD",
    0x00002000: "CLONE_PTRACE",
    0x00004000: "CLONE_VFORK",
    0x00008000: "CLONE_PARENT",
    0x00010000: "CLONE_THREAD",
    0x00020000: "CLONE_NEWNS",
    0x00040000: "CLONE_SYSVSEM",
    0x00080000: "CLONE_SETTLS",
    0x00100000: "CLONE_PARENT_SETTID",
    0x00200000: "CLONE_CHILD_CLEARTID",
    0x00400000: "CLONE_DETACHED",
    0x00800000: "CLONE_UNTRACED",
    0x01000000: "CLONE_CHILD_SETTID",
    0x02000000: "CLONE_NEWCGROUP",
    0x04000000: "CLONE_NEWUTS",
    0x08000000: "CLONE_NEWIPC",
    0x10000000: "CLONE_NEWUSER",
    0x20000000: "CLONE_NEWPID",
    0x40000000: "CLONE_NEWNET",
    0x80000000: "CLONE_IO",
    0x100000000: "CLONE_CLEAR_SIGHAND",
    0x200000000: "CLONE_INTO_CGROUP",
}
CSIGNAL = 0x000000FF

# unshare() takes the namespace flags (CLONE_NEWTIME included: no exit signal here)
# and a few of clone's sharing flags.
_UNSHARE_SHARING_FLAGS = 0x00000100 | 0x00000200 | 0x00000400 | 0x00000800 | 0x00010000 | 0x00040000
UNSHARE_FLAG_NAMES = {bit: name for bit, name in CLONE_FLAG_NAMES.items()
                      if bit & (NS_FLAGS_MASK | _UNSHARE_SHARING_FLAGS)}
UNSHARE_FLAG_NAMES[CLONE_NEWTIME] = "CLONE_NEWTIME"


def _names(value: int, table: dict) -> list:
    names = []
    rest = value
    for bit in sorted(table):
        if value & bit:
            names.append(table[bit])
            rest &= ~bit
    if rest:
        names.append("0x%x" % rest)
    return names


def decode_clone_flags(flags: int, syscall: str | None) -> list:
    """Flag names of clone/clone3.  clone()'s low byte is the exit signal, not flags."""
    if syscall == "clone3":
        table = dict(CLONE_FLAG_NAMES)
        table[CLONE_NEWTIME] = "CLONE_NEWTIME"
        return _names(flags, table)
    # clone(): CLONE_NEWTIME (0x80) sits inside CSIGNAL and cannot be passed.
    return _names(flags & ~CSIGNAL, CLONE_FLAG_NAMES)


def decode_unshare_flags(flags: int) -> list:
    return _names(flags, UNSHARE_FLAG_NAMES)


def decode_setns_nstype(nstype: int) -> list:
    """setns's nstype: 0 (any type), one CLONE_NEW* flag, or a mask with a pidfd."""
    if nstype == 0:
        return []
    return _names(nstype, {flag: "CLONE_NEW" + ("NS" if t == "mnt" else t.upper())
                           for flag, t in NS_FLAG_TYPES.items()})


def flag_types(flags: int) -> list:
    """Namespace types named by CLONE_NEW* bits, in NS_SLOTS order."""
    present = {t for flag, t in NS_FLAG_TYPES.items() if flags & flag}
    return [t for t in NS_SLOTS if t in present]
