"""Flag names of clone/clone3, unshare and setns, for display (`nsgraph trace`, the Graph JSON).

The namespace flags themselves (CLONE_NEW*) belong to the vocabulary (tracer.nstypes).
"""

from __future__ import annotations

from ..nstypes import CLONE_NEWTIME, NS_FLAG_TYPES, NS_FLAGS_MASK

# Sharing flags the model looks at (a new thread; a child that gets its parent's parent).
CLONE_PARENT = 0x00008000
CLONE_THREAD = 0x00010000

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
