"""The namespace table: identity, generations, recycling, orphans, ended retention.

Identity: the kernel recycles namespace inode numbers at once, so a namespace
is keyed by (type, dev, inode, generation); the generation of a (type, inode)
advances each time a namespace with that inode is seen to end.  The kernel's
64-bit ns_id, where both sides have it, tells a recycled inode from the same
namespace.  Inodes are unique among *live* namespaces of all types, so `alive`
is keyed by inode alone.

Ending: a namespace that loses its last reference (member, *_for_children slot,
thread, owned/child namespace, pin, fd holder) is only *orphaned*: it may still
be pinned by a bind mount we cannot see in events (`ip netns add` mounts after
its unshare).  A reconcile (reconcile.py) ends those a snapshot does not show,
at the time they lost their last reference.  An orphan whose inode turns up for
a new namespace has certainly ended at once.  Ended namespaces are kept for
history, the newest `retention` of them.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Optional

from ..nstypes import SLOT_TYPE
from .changelog import ChangeLog
from .entities import Namespace

DEFAULT_ENDED_RETENTION = 2000      # ended namespaces kept for history


class NamespaceTable:
    def __init__(self, dev: int, changes: ChangeLog, counters: dict,
                 retention: int = DEFAULT_ENDED_RETENTION,
                 on_stale: Optional[Callable[[Namespace], None]] = None):
        self.dev = dev
        self.changes = changes
        self.counters = counters    # the model's: "repaired" is counted here
        self.retention = retention
        # on_stale(ns): ns ends while processes still point at it (missed events).
        self.on_stale = on_stale
        self.alive = {}             # inode -> Namespace (inodes are unique among live namespaces)
        self.by_id = {}             # id -> Namespace, live and retained ended ones
        self.by_nsid = {}           # kernel ns_id -> Namespace
        self.gens = {}              # (type, inode) -> next generation
        self.ended = deque()        # retained ended namespaces, oldest first
        self.orphans = {}           # id -> Namespace without references, end not yet confirmed
        self.held_by = {}           # pid -> set of Namespace it holds an fd to

    # -- finding -----------------------------------------------------------------

    def live(self, ns_type: str, inode) -> Optional[Namespace]:
        """The live namespace of that type with that inode, or None."""
        ns = self.alive.get(inode) if inode is not None else None
        return ns if ns is not None and ns.type == ns_type else None

    def live_in_slot(self, slot: str, ns_map) -> Optional[Namespace]:
        return self.live(SLOT_TYPE[slot], ns_map.get(slot))

    def resolve(self, ns_type: str, inode: int, nid, ts) -> Namespace:
        """The namespace a process is seen in: the live one, or a new one (the old ended)."""
        ns = self.alive.get(inode)
        if ns is not None:
            if ns.type == ns_type and (nid is None or ns.ns_id is None or ns.ns_id == nid):
                if nid is not None and ns.ns_id is None:
                    ns.ns_id = nid
                    self.by_nsid[nid] = ns
                return ns
            self.end_recycled(ns, ts)
        return self.add(ns_type, inode, nid, None, None)

    def recently_ended(self, version: int) -> list:
        return [ns for ns in self.ended if ns.version > version]

    def pinned_only(self) -> int:
        return sum(1 for ns in self.alive.values()
                   if not ns.members and ns.refs <= 0 and (ns.pinned or ns.holders))

    def counts_by_type(self) -> dict:
        by_type = {}
        for ns in self.alive.values():
            by_type[ns.type] = by_type.get(ns.type, 0) + 1
        return by_type

    # -- beginnings ----------------------------------------------------------------

    def create(self, ns_type: str, inode: int, nid, ts, creator: Optional[dict]) -> Namespace:
        """A namespace a call created: the inode is new, whatever the table thought."""
        old = self.alive.get(inode)
        if old is not None:
            if old.type == ns_type and nid is not None and old.ns_id == nid:
                # The same namespace, found first by a snapshot taken after the call and
                # before its event was applied: the event says who made it, and when.
                if old.creator is None and creator is not None:
                    old.creator = creator
                    if ts is not None and (old.created is None or ts < old.created):
                        old.created = ts
                    self.changes.record("update", "namespace", old.id)
                    old.version = self.changes.version
                return old
            self.end_recycled(old, ts)
        return self.add(ns_type, inode, nid, ts, creator)

    def add(self, ns_type: str, inode: int, nid, created, creator) -> Namespace:
        """A namespace the table did not have (or that the kernel says never ended)."""
        if nid is not None:
            old = self.by_nsid.get(nid)
            if old is not None and old.ended is not None and old.type == ns_type and old.inode == inode:
                # Seen ending, but the kernel says it is the same namespace: it lived on.
                old.ended = None
                self.alive[inode] = old
                try:
                    self.ended.remove(old)
                except ValueError:
                    pass
                old.repaired = True
                self.counters["repaired"] += 1
                self.changes.record("update", "namespace", old.id)
                return old
        gen = self.gens.get((ns_type, inode), 0)
        ns = Namespace(ns_type, self.dev, inode, gen, nid, created, creator)
        ns.version = self.changes.next_version
        self.alive[inode] = ns
        self.by_id[ns.id] = ns
        if nid is not None:
            self.by_nsid[nid] = ns
        self.changes.record("add", "namespace", ns.id)
        return ns

    def restore(self, ns: Namespace) -> None:
        """A namespace from a checkpoint (checkpoint.py), relations set afterwards."""
        self.by_id[ns.id] = ns
        if ns.ns_id is not None:
            self.by_nsid[ns.ns_id] = ns
        if ns.ended is None:
            self.alive[ns.inode] = ns
            if ns.orphaned_at is not None:
                self.orphans[ns.id] = ns
        else:
            self.ended.append(ns)
        for pid in ns.holders:
            self.held_by.setdefault(pid, set()).add(ns)

    # -- references ------------------------------------------------------------------

    def detach(self, ns: Namespace, ts, member_pid=None) -> None:
        """A member (member_pid) or a reference (None) lets go of ns."""
        if member_pid is not None:
            ns.members.discard(member_pid)
        else:
            ns.refs -= 1
        if not ns.members and ns.refs <= 0:
            self.check_orphan(ns, ts)

    def unorphan(self, ns: Namespace) -> None:
        """ns is held again: its JSON's pending_end goes back to false, a change like the
        orphaning was (a diff that left it out would show it ending for good)."""
        ns.orphaned_at = None
        self.orphans.pop(ns.id, None)
        self.changes.record("update", "namespace", ns.id)

    def check_orphan(self, ns: Namespace, ts) -> None:
        if ns.ended is not None or ns.orphaned_at is not None or ns.referenced():
            return
        ns.orphaned_at = ts
        self.orphans[ns.id] = ns
        self.changes.record("update", "namespace", ns.id)

    def set_holders(self, ns: Namespace, pids: tuple) -> None:
        for pid in ns.holders:
            self.held_by.get(pid, set()).discard(ns)
        for pid in pids:
            self.held_by.setdefault(pid, set()).add(ns)
        ns.holders = pids

    def release_holder(self, pid: int, ts) -> None:
        """pid exited: the namespaces it held open by fd lose that hold."""
        held = self.held_by.pop(pid, None)
        if held:
            for ns in held:
                if pid in ns.holders:
                    ns.holders = tuple(h for h in ns.holders if h != pid)
                    self.check_orphan(ns, ts)

    def set_relations(self, ns: Namespace, owner: Optional[Namespace], parent: Optional[Namespace]) -> None:
        """ns's owning user namespace and parent; a live ns counts as a child of both."""
        for attr, new in (("owner", owner), ("parent", parent)):
            old = getattr(ns, attr)
            if new is ns:
                new = None
            if old is new:
                continue
            if old is not None and ns.ended is None:
                old.children -= 1
            setattr(ns, attr, new)
            if new is not None:
                setattr(ns, attr + "_inode", new.inode)
                if ns.ended is None:
                    new.children += 1
                    if new.orphaned_at is not None:
                        self.unorphan(new)

    def link_all(self) -> None:
        """Owners and parents from the inodes a snapshot gave (after loading it)."""
        alive = self.alive
        for ns in list(alive.values()):
            owner = alive.get(ns.owner_inode) if ns.owner_inode else None
            parent = alive.get(ns.parent_inode) if ns.parent_inode else None
            self.set_relations(ns, owner if owner is not None and owner.type == "user" else None,
                               parent if parent is not None and parent.type == ns.type else None)

    # -- endings -----------------------------------------------------------------------

    def end_recycled(self, ns: Namespace, ts) -> None:
        """ns's inode now names another namespace: ns has ended."""
        # An orphan was simply not confirmed yet; anything else means we missed events.
        if ns.orphaned_at is None:
            self.counters["repaired"] += 1
        self.end(ns, ns.orphaned_at if ns.orphaned_at is not None else ts)

    def end(self, ns: Namespace, ts) -> None:
        if ns.ended is not None:
            return
        ns.ended = ts
        ns.orphaned_at = None
        ns.version = self.changes.next_version
        self.orphans.pop(ns.id, None)
        if self.alive.get(ns.inode) is ns:
            del self.alive[ns.inode]
        key = (ns.type, ns.inode)
        if self.gens.get(key, 0) <= ns.gen:
            self.gens[key] = ns.gen + 1
        self.changes.record("update", "namespace", ns.id)
        if ns.members and self.on_stale is not None:
            self.on_stale(ns)
        ns.members.clear()
        ns.refs = 0
        for rel in (ns.owner, ns.parent):
            if rel is not None:
                rel.children -= 1
                self.check_orphan(rel, ts)
        self.ended.append(ns)
        while len(self.ended) > self.retention:
            old = self.ended.popleft()
            if old.ended is not None and self.by_id.get(old.id) is old:
                del self.by_id[old.id]
                if old.ns_id is not None and self.by_nsid.get(old.ns_id) is old:
                    del self.by_nsid[old.ns_id]
                self.changes.record("remove", "namespace", old.id)
