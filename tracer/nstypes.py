"""The namespace-type vocabulary: the one place that names namespace types, slots and orders.

A *slot* is one entry of a task's namespace set: a namespace type ("net"), or
one of the two *_for_children slots (where the task's future children go; not a
membership).  Slot order is the order of struct nsg_ns_set in ebpf/nsgraph.h
(kernel/abi.py mirrors the C layout with it; tests/kernel/test_abi.py checks it).
"""

from __future__ import annotations

import functools

# Slot order of struct nsg_ns_set (NSG_NS_* in ebpf/nsgraph.h).
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

# The namespace types a process is a member of, in slot order.
MEMBER_TYPES = ("mnt", "pid", "net", "uts", "ipc", "user", "cgroup", "time")

# The namespace type of each slot, as the kernel writes its link ("pid_for_children" -> "pid:[...]").
SLOT_TYPE = {slot: slot.replace("_for_children", "") for slot in NS_SLOTS}

# The *_for_children slot of the types that have one.
CHILDREN_SLOT = {"pid": "pid_for_children", "time": "time_for_children"}

# How tables and the dashboard list types: owners first (user, pid), then the rest.
# The dashboard gets it as NS_TYPES from /static/js/vocab.js (webapp/vocab.py).
DISPLAY_ORDER = ("user", "pid", "mnt", "net", "uts", "ipc", "cgroup", "time")

# The namespaces Docker gives every container of its own (and `docker exec` joins), in the
# order runc's `runc:[1:CHILD]` joins them during `docker exec`.  (cgroup too on cgroup v2
# hosts; user only with userns-remap.)
CONTAINER_TYPES = ("ipc", "uts", "net", "pid", "mnt")

# CONTAINER_TYPES, then the types runc does not join by default.  A join session's target
# namespaces are tried in this order to find its container.
RUNC_JOIN_ORDER = CONTAINER_TYPES + ("user", "cgroup", "time")

# Namespace flags shared by clone, clone3 and unshare, and setns's nstype
# (and the answer of the NS_GET_NSTYPE ioctl).
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


def flag_types(flags: int) -> list:
    """Namespace types named by CLONE_NEW* bits, in NS_SLOTS order (a new list)."""
    return list(_flag_types(flags & NS_FLAGS_MASK))


@functools.lru_cache(maxsize=512)
def _flag_types(flags: int) -> tuple:
    # Asked for every clone, unshare and setns event, with a few distinct values.
    present = {t for flag, t in NS_FLAG_TYPES.items() if flags & flag}
    return tuple(t for t in NS_SLOTS if t in present)


def parse_type_list(values, allowed=MEMBER_TYPES) -> set:
    """The types of --type options, given as repeats, comma lists or both
    ("--type net,pid", "--type net --type pid"); every command takes them this way.
    A single string is one value. Raises ValueError naming the unknown ones."""
    if isinstance(values, str):
        values = [values]
    types = {t.strip() for value in (values or ()) for t in str(value).split(",") if t.strip()}
    if not types and any(str(v).strip() for v in (values or ())):
        raise ValueError("--type needs at least one name, got %r (for example --type net,pid)"
                         % ",".join(map(str, values)))
    unknown = types - set(allowed)
    if unknown:
        raise ValueError("unknown namespace type %s (known: %s)" % (
            ", ".join(sorted(unknown)), ", ".join(allowed)))
    return types
