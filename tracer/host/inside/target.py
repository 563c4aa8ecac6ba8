"""Getting hold of a namespace: which one is meant, and a checked, open handle on it.

A target names a namespace by (type, dev, inode) plus, where the kernel has
one, its 64-bit ns_id, and lists where to find it: member pids (from the live
graph, or a /proc scan) and nsfs bind mounts.  A handle is an open fd on the
namespace whose fstat (and NS_GET_ID) says it is the one meant, plus the open
/proc/<pid> directory of the member it came through.  Holding the fd keeps the
namespace (and so its inode) from being recycled while it is read; the
directory fd keeps reads on that one process even if its pid is reused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

from .. import nsfs
from ..procfs import parse_ns_link, pids
from .procread import O_DIR

O_NS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
MEMBERS_TRIED = 8        # members tried before a namespace is called ended


@dataclass
class NsTarget:
    type: str
    inode: int
    dev: int
    id: Optional[str] = None            # the graph's id, "type:dev:inode:gen"
    ns_id: Optional[int] = None         # NS_GET_ID (Linux 6.18+), checked when both sides have it
    pids: list = field(default_factory=list)      # candidate members, tried first, in order
    pinned: list = field(default_factory=list)    # nsfs bind-mount paths as the host sees them
    label: Optional[str] = None         # "host", "container myapp", "pid 1234 (sleep)"

    @property
    def short(self) -> str:
        return "%s:[%d]" % (self.type, self.inode)


def is_it(fd: int, target: NsTarget) -> bool:
    """Is the namespace behind fd the target (device, inode, and ns_id where known)?"""
    st = os.fstat(fd)
    if st.st_ino != target.inode or (target.dev and st.st_dev != target.dev):
        return False
    if target.ns_id is not None:
        found = nsfs.ns_id(fd)
        if found is not None and found != target.ns_id:
            return False        # the same inode, recycled for a newer namespace
    return True


class Handle:
    """An open, checked grip on one namespace, through a member or a pin."""

    def __init__(self, target: NsTarget, ns_fd: int, pid: Optional[int], proc_fd: Optional[int],
                 source: str):
        self.target = target
        self.ns_fd = ns_fd
        self.pid = pid
        self.proc_fd = proc_fd
        self.source = source

    def member_still_inside(self) -> bool:
        """Is the process this handle came through still alive and in the namespace?"""
        if self.proc_fd is None:
            return _pin_still_there(self.source, self.target)
        try:
            parsed = parse_ns_link(os.readlink("ns/" + self.target.type, dir_fd=self.proc_fd))
        except OSError:
            return False
        return parsed == (self.target.type, self.target.inode)

    def open_member_file(self, name: str) -> int:
        return os.open(name, O_NS, dir_fd=self.proc_fd)

    def close(self) -> None:
        for fd in (self.ns_fd, self.proc_fd):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.ns_fd = self.proc_fd = None


def _pin_still_there(path: str, target: NsTarget) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return st.st_ino == target.inode and (not target.dev or st.st_dev == target.dev)


def open_through_member(target: NsTarget, pid: int, proc_root: str = "/proc") -> Optional[Handle]:
    try:
        proc_fd = os.open("%s/%d" % (proc_root, pid), O_DIR)
    except OSError:
        return None
    try:
        ns_fd = os.open("ns/" + target.type, O_NS, dir_fd=proc_fd)
    except OSError:
        os.close(proc_fd)
        return None
    if not is_it(ns_fd, target):
        os.close(ns_fd)
        os.close(proc_fd)
        return None
    return Handle(target, ns_fd, pid, proc_fd, "pid %d" % pid)


def open_through_pin(target: NsTarget, path: str) -> Optional[Handle]:
    # Paths of pins seen only in another mount namespace ("mnt:[...]/run/netns/x") are not
    # reachable from here; the check below refuses anything that is not the namespace.
    if not path.startswith("/"):
        return None
    try:
        ns_fd = os.open(path, O_NS | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        if nsfs.nstype(ns_fd) == target.type and is_it(ns_fd, target):
            return Handle(target, ns_fd, None, None, path)
    except OSError:
        pass
    os.close(ns_fd)
    return None


def find_members(ns_type: str, inode: int, proc_root: str = "/proc", limit: int = MEMBERS_TRIED) -> list:
    """Up to `limit` pids whose /proc/<pid>/ns/<type> is that inode (a scan of /proc)."""
    want = "%s:[%d]" % (ns_type, inode)
    found = []
    for pid in pids(proc_root):
        try:
            if os.readlink("%s/%d/ns/%s" % (proc_root, pid, ns_type)) == want:
                found.append(pid)
                if len(found) >= limit:
                    break
        except OSError:
            continue
    return found


class Opener:
    """Hands out handles on a target, one member after another, never the same twice."""

    def __init__(self, target: NsTarget, proc_root: str = "/proc"):
        self.target = target
        self.proc_root = proc_root
        self.tried = set()
        self.scanned = None

    def _candidates(self):
        yield from list(self.target.pids)[:MEMBERS_TRIED]
        if self.scanned is None:
            # The graph's member list can lag behind the kernel: ask /proc itself.
            self.scanned = find_members(self.target.type, self.target.inode, self.proc_root)
        yield from self.scanned

    def next_handle(self) -> Optional[Handle]:
        for pid in self._candidates():
            if pid in self.tried:
                continue
            self.tried.add(pid)
            handle = open_through_member(self.target, pid, self.proc_root)
            if handle is not None:
                return handle
        for path in self.target.pinned:
            if path in self.tried:
                continue
            self.tried.add(path)
            handle = open_through_pin(self.target, path)
            if handle is not None:
                return handle
        return None

    def still_alive(self, handle: Handle) -> bool:
        """After a read: does anything but our own fd still keep the namespace alive?"""
        if handle.member_still_inside():
            return True
        if any(_pin_still_there(p, self.target) for p in self.target.pinned if p.startswith("/")):
            return True
        candidates = [p for p in list(self.target.pids)[:MEMBERS_TRIED] if p != handle.pid]
        for group in (candidates, None):
            if group is None:
                group = [p for p in find_members(self.target.type, self.target.inode, self.proc_root, 2)
                         if p != handle.pid]
            for pid in group:
                other = open_through_member(self.target, pid, self.proc_root)
                if other is not None:
                    other.close()
                    return True
        return False
