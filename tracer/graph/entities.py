"""The model's entities: a Namespace over its lifetime, and a Process.

Both are plain slotted records.  Only the model's own modules change them
(nstable.py, processes.py, handlers.py, ops.py, checkpoint.py, all under the
graph lock); everything else reads them through NamespaceGraph's JSON views.
"""

from __future__ import annotations

from typing import Optional

from ..nstypes import MEMBER_TYPES, SLOT_TYPE
from .schema import namespace_id

# Slots that are memberships (a process is *in* that namespace); the *_for_children
# slots only hold a reference, as the kernel's nsproxy does.
MEMBER_SLOTS = frozenset(MEMBER_TYPES)


class BadEvent(ValueError):
    """Input whose content cannot be right: counted as rejected, nothing of it applied."""


def check_maps(*maps) -> None:
    """Raise BadEvent unless every map is {known slot: int inode} (None or empty maps pass)."""
    for source in maps:
        if source:
            for slot in source:
                if slot not in SLOT_TYPE or type(source[slot]) is not int:
                    raise BadEvent("namespace slot %r=%r" % (slot, source[slot]))


class Namespace:
    __slots__ = ("type", "dev", "inode", "gen", "id", "ns_id", "created", "ended", "creator",
                 "members", "refs", "children", "owner", "parent", "owner_inode", "parent_inode",
                 "owner_uid", "uid_map", "gid_map", "pinned", "holders", "orphaned_at",
                 "repaired", "version")

    def __init__(self, ns_type, dev, inode, gen, ns_id, created, creator):
        self.type = ns_type
        self.dev = dev
        self.inode = inode
        self.gen = gen               # how many namespaces with this (type, inode) ended before it
        self.id = namespace_id(ns_type, dev, inode, gen)
        self.ns_id = ns_id           # the kernel's 64-bit id, never reused (Linux 6.18+)
        self.created = created
        self.ended = None
        self.creator = creator           # Creator JSON of the call that made it (schema.Creator)
        self.members = set()         # pids whose membership slot holds it
        self.refs = 0                # *_for_children slots and threads holding it
        self.children = 0            # live namespaces owned by it or having it as parent
        self.owner = None            # Namespace (user) that owns it, when known
        self.parent = None           # Namespace: the parent pid or user namespace
        self.owner_inode = None
        self.parent_inode = None
        self.owner_uid = None
        self.uid_map = None
        self.gid_map = None
        self.pinned = ()             # nsfs bind mounts
        self.holders = ()            # pids holding it open by fd
        self.orphaned_at = None      # lost its last reference then; a snapshot confirms the end
        self.repaired = False
        self.version = 0             # the model version of its last change

    @property
    def key(self) -> tuple:
        return (self.type, self.dev, self.inode, self.gen)

    def referenced(self) -> bool:
        return bool(self.members or self.refs > 0 or self.children > 0 or self.pinned or self.holders)


class Process:
    __slots__ = ("pid", "ppid", "uid", "comm", "cmdline", "cgroup", "start_ticks", "ns", "threads",
                 "container", "fresh", "filename", "version", "repaired", "sig", "zombie")

    def __init__(self, pid, ppid, uid, comm):
        self.pid = pid
        self.ppid = ppid
        self.uid = uid
        self.comm = comm
        self.cmdline = None      # list of args; None until read (lazily) from /proc
        self.cgroup = None
        self.start_ticks = None
        self.ns = {}             # slot -> Namespace
        self.threads = None      # tid -> {slot: Namespace} for threads with namespaces of their own
        self.container = None    # container id
        self.fresh = False       # cmdline/cgroup read since the last exec
        self.filename = None
        self.version = 0
        self.repaired = False
        self.sig = None          # the slot -> inode map ns was last set from (fast equality)
        # Exited, not yet reaped: still a member of its pid and user namespaces (the
        # links /proc keeps for a zombie; lsns counts it there).  Only /proc readings
        # make one (reconcile.py); the service drops it once /proc no longer shows it.
        self.zombie = False


def container_json(container) -> Optional[dict]:
    """The model keeps containers as their JSON (schema.ContainerJSON): a
    tracer.containers Container record, its JSON already, or None."""
    if container is None:
        return None
    if isinstance(container, dict):
        return container
    return container.to_json()
