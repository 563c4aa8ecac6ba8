"""Namespaces that live without a member process.

Two things keep a namespace alive besides its members:

* an nsfs bind mount (`ip netns add X` -> /run/netns/X, Docker's
  /run/docker/netns/<id>), listed in the mount table of some mount namespace
  with fstype "nsfs" and a root field like "net:[4026532300]";
* an open file descriptor on a namespace file, seen as a /proc/<pid>/fd/<n>
  link that reads "net:[4026532300]".

Mount tables are per mount namespace, so one member of every distinct mount
namespace is asked.  fd links are read for every process; sockets, pipes and
files are told apart from namespaces by the link text alone, without a stat.
"""

from __future__ import annotations

import errno
import itertools
import os
import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Optional

from ..nstypes import MEMBER_TYPES

_MEMBER_TYPES = frozenset(MEMBER_TYPES)   # for fast membership tests
_GONE = (errno.ENOENT, errno.ESRCH)
_OCTAL = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class Pin:
    type: str
    dev: int
    inode: int
    path: str          # the mount point as shown to the reader (see find_pins)
    open_path: str     # a path that opens it from here: /proc/<pid>/root/<mount point>


@dataclass(frozen=True)
class Holder:
    type: str
    inode: int
    pid: int
    fd: int


def unescape(field: str) -> str:
    r"""mountinfo escapes space, tab, newline and backslash as \040, \011, \012, \134."""
    if "\\" not in field:
        return field
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_nsfs_mounts(text: str, errors: Optional[Counter] = None) -> list:
    """nsfs mounts of one mountinfo text -> [(type, dev, inode, mount point)].

    Lines that do not have the mountinfo shape are counted as malformed.
    """
    out = []
    for line in text.splitlines():
        if " nsfs " not in line:
            continue
        fields = line.split()
        try:
            sep = fields.index("-", 6)
            fstype = fields[sep + 1]
            major, minor = fields[2].split(":")
            dev = os.makedev(int(major), int(minor))
            root, mount_point = fields[3], unescape(fields[4])
        except (ValueError, IndexError):
            if errors is not None:
                errors["malformed"] += 1
            continue
        if fstype != "nsfs":
            continue
        colon = root.find(":[")
        ns_type, digits = root[:colon], root[colon + 2:-1]
        if colon <= 0 or not root.endswith("]") or ns_type not in _MEMBER_TYPES or not digits.isdigit():
            if errors is not None:
                errors["malformed"] += 1
            continue
        out.append((ns_type, dev, int(digits), mount_point))
    return out


# Members of one mount namespace looked at for a reader that is not chrooted.
READER_CANDIDATES = 64


def readers_first(members, proc_root: str = "/proc", limit: int = READER_CANDIDATES,
                  enough: int = READER_CANDIDATES) -> list:
    """The members whose mountinfo to read, best first.

    A chrooted process (debootstrap's dpkg, a daemon's privilege-separated child) sees
    only the mounts under its root in its mountinfo, so read from it, the host's
    /run/netns pins would be missing and a settle would end namespaces that are pinned.
    Members whose root is "/" come first, then those whose root could not be read, then
    the chrooted ones (a mount namespace of only chrooted processes still shows their pins).
    The scan stops at `enough` members whose root is "/" (the host's namespace has thousands).
    """
    rooted, unknown, chrooted = [], [], []
    for pid in itertools.islice(members, limit):
        try:
            root = os.readlink("%s/%d/root" % (proc_root, pid))
        except OSError:
            unknown.append(pid)
            continue
        (rooted if root == "/" else chrooted).append(pid)
        if len(rooted) >= enough:
            break
    return rooted + unknown + chrooted


def find_pins(mnt_members: dict, proc_root: str = "/proc", own_mnt: Optional[tuple] = None,
              errors: Optional[Counter] = None, tries: int = 3) -> list:
    """Every nsfs bind mount in every mount namespace.

    mnt_members maps a mount namespace (any hashable key) to member pids; the
    mountinfo of the first member that can still be read is used.  Paths in
    own_mnt (the reader's mount namespace) are given as they are; a pin seen only
    in another mount namespace is shown as "mnt:[<inode>]<path>", the kernel's
    own notation, so that it is not mistaken for a path on the host.
    """
    if errors is None:
        errors = Counter()
    seen = {}
    for mnt, members in mnt_members.items():
        for pid in readers_first(members, proc_root, enough=tries)[:tries]:
            try:
                with open("%s/%d/mountinfo" % (proc_root, pid), "r", encoding="utf-8",
                          errors="surrogateescape") as handle:
                    text = handle.read()
            except OSError as exc:
                errors["vanished" if exc.errno in _GONE else "pins_unreadable"] += 1
                continue
            for ns_type, dev, inode, mount_point in parse_nsfs_mounts(text, errors):
                if mnt == own_mnt or own_mnt is None:
                    shown = mount_point
                else:
                    shown = "mnt:[%s]%s" % (mnt[-1] if isinstance(mnt, tuple) else mnt, mount_point)
                key = (ns_type, dev, inode, shown)
                if key not in seen:
                    seen[key] = Pin(ns_type, dev, inode, shown,
                                    "%s/%d/root%s" % (proc_root, pid, mount_point))
            break
    return list(seen.values())


def find_fd_holders(pids: Iterable[int], proc_root: str = "/proc",
                    errors: Optional[Counter] = None) -> list:
    """Every open fd on a namespace file, as Holder(type, inode, pid, fd).

    Costs one listdir plus one readlink per fd per process; nothing is stat'ed.
    """
    if errors is None:
        errors = Counter()
    readlink, listdir = os.readlink, os.listdir
    types = _MEMBER_TYPES
    out = []
    for pid in pids:
        # listdir(path) costs 4 system calls; listdir(fd) would add dup/lseek.
        fd_dir = "%s/%d/fd/" % (proc_root, pid)
        try:
            names = listdir(fd_dir)
        except OSError as exc:
            errors["vanished" if exc.errno in _GONE else "fds_unreadable"] += 1
            continue
        for name in names:
            try:
                target = readlink(fd_dir + name)
            except OSError:
                continue          # closed since the listing: nothing to hold
            # "/path", "socket:[1]", "pipe:[2]", "anon_inode:[eventfd]" are
            # rejected by the first test or the type lookup.
            if target.startswith("/"):
                continue
            colon = target.find(":[")
            if colon <= 0 or target[:colon] not in types:
                continue
            digits = target[colon + 2:-1]
            if not digits.isdigit() or not name.isdigit():
                errors["malformed"] += 1
                continue
            out.append(Holder(target[:colon], int(digits), pid, int(name)))
    return out
