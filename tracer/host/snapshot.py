"""A full Snapshot of every namespace and process, read from /proc and nsfs.

Order of work, chosen for speed (10 000 processes in well under half a second):

1. every process once: stat, cmdline, cgroup and the ten ns links (procfs.py);
2. processes grouped by their whole namespace set, so that later steps touch
   each distinct combination once instead of each process;
3. nsfs bind mounts, from one member of each mount namespace (pins.py);
4. fds on namespace files (pins.py; optional, it reads every fd of every
   process), done with step 1, which on large hosts is shared with a forked
   helper process (see _scan_split);
5. the ioctls, once per distinct namespace, on an fd opened from a member's
   link, a pin or a holder's fd (nsfs.py).  Owners and parents that no process,
   pin or fd holds (a user namespace kept alive only by its children) are
   reached through the ioctls and included too.

Nothing here raises on a process that changes under us: the reason is counted in
Snapshot.errors (see procfs.py for the process-level reasons; here also
"changed": a member left the namespace before it could be opened, and
"ns_unreadable": no member, pin or holder could be opened at all).
"""

from __future__ import annotations

import errno
import marshal
import os
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

from ..nstypes import MEMBER_TYPES, NS_SLOTS, SLOT_TYPE
from . import nsfs, pins
from .procfs import (NsRef, ProcInfo, available_slots, nsfs_device, pids,
                     read_ns_links, scan_processes)

__all__ = ["NsRef", "NsInfo", "ProcInfo", "Snapshot", "take_snapshot"]

_O_NS = os.O_RDONLY | os.O_CLOEXEC
_TRIES = 5          # members tried before a namespace is declared unreadable


@dataclass
class NsInfo:
    type: str
    inode: int
    dev: int
    ns_id: Optional[int] = None         # NS_GET_ID where the kernel has it
    owner_inode: Optional[int] = None   # owning user namespace (NS_GET_USERNS)
    parent_inode: Optional[int] = None  # pid and user namespaces (NS_GET_PARENT)
    owner_uid: Optional[int] = None     # user namespaces (NS_GET_OWNER_UID)
    uid_map: Optional[str] = None       # user namespaces, from a member's /proc/<pid>/uid_map
    gid_map: Optional[str] = None
    pinned: list = field(default_factory=list)    # nsfs bind-mount paths
    holders: list = field(default_factory=list)   # pids holding an fd without being members

    @property
    def ref(self) -> NsRef:
        return (self.type, self.dev, self.inode)


@dataclass
class Snapshot:
    taken_at: float
    processes: dict            # pid -> ProcInfo
    namespaces: dict           # NsRef -> NsInfo
    errors: Counter
    timings: dict = field(default_factory=dict)   # phase -> seconds, for bench/

    def members(self, ref: NsRef, slots=MEMBER_TYPES) -> list:
        """Sorted pids whose membership (not *_for_children) is ref."""
        ns_type, dev, inode = ref
        want = (dev, inode)
        return sorted(p.pid for p in self.processes.values()
                      if any(p.ns.get(s) == want for s in slots if SLOT_TYPE[s] == ns_type))

    def member_counts(self, slots=MEMBER_TYPES) -> Counter:
        """NsRef -> number of member processes, every namespace at once."""
        counts = Counter()
        for p in self.processes.values():
            for slot in slots:
                value = p.ns.get(slot)
                if value is not None:
                    counts[(SLOT_TYPE[slot], value[0], value[1])] += 1
        return counts


class _Describer:
    """Step 5: one round of ioctls per distinct namespace."""

    def __init__(self, proc_root: str, errors: Counter):
        self.proc_root = proc_root
        self.errors = errors
        self.namespaces = {}
        self.known = set()
        self.remap = {}            # ref as read from a link -> ref as fstat tells it

    def open_checked(self, path: str, ref: NsRef):
        """An fd on path if it still is the namespace ref, else None."""
        try:
            fd = os.open(path, _O_NS)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ESRCH):
                self.errors["ns_open_" + errno.errorcode.get(exc.errno, str(exc.errno))] += 1
            return None
        try:
            st = os.fstat(fd)
            if st.st_ino != ref[2] or nsfs.nstype(fd) != ref[0]:
                self.errors["changed"] += 1
                os.close(fd)
                return None
        except OSError:
            os.close(fd)
            return None
        if st.st_dev != ref[1]:
            # One nsfs superblock is assumed for the links' device; if a kernel
            # ever has more, trust fstat and move the readers' references over.
            self.errors["dev_mismatch"] += 1
            self.remap[ref] = (ref[0], st.st_dev, ref[2])
        return fd

    def describe(self, fd: int, ns_type: str) -> NsInfo:
        meta = nsfs.describe(fd, ns_type, self.errors)
        info = NsInfo(ns_type, meta.inode, meta.dev, meta.ns_id,
                      meta.owner[1] if meta.owner else None,
                      meta.parent[1] if meta.parent else None,
                      meta.owner_uid)
        ref = info.ref
        self.namespaces[ref] = info
        self.known.add(ref)
        related = [(nsfs.get_userns, "user", meta.owner)]
        if meta.parent is not None:
            related.append((nsfs.get_parent, ns_type, meta.parent))
        for getter, rel_type, rel in related:
            if rel is None or (rel_type, rel[0], rel[1]) in self.known:
                continue
            # An ancestor no process, pin or fd holds: reach it from here.
            self.known.add((rel_type, rel[0], rel[1]))
            _, rel_fd = getter(fd, self.errors, keep=True)
            if rel_fd is not None:
                try:
                    self.describe(rel_fd, rel_type)
                finally:
                    os.close(rel_fd)
        return info

    def user_maps(self, info: NsInfo, pid: int) -> None:
        base = "%s/%d/" % (self.proc_root, pid)
        try:
            with open(base + "uid_map") as f:
                uid_map = f.read()
            with open(base + "gid_map") as f:
                gid_map = f.read()
        except OSError:
            return
        # The maps belong to whatever user namespace pid is in *now*: check it did not move.
        if read_ns_links(pid, self.proc_root, ("user",)).get("user") == ("user", info.inode):
            info.uid_map, info.gid_map = uid_map, gid_map

    def from_sources(self, ref: NsRef, sources) -> Optional[NsInfo]:
        """Describe ref from the first source that opens; sources yield (path, pid or None)."""
        for tries, (path, member_pid) in enumerate(sources):
            if tries >= _TRIES:
                break
            fd = self.open_checked(path, ref)
            if fd is None:
                continue
            try:
                info = self.describe(fd, ref[0])
            finally:
                os.close(fd)
            if ref[0] == "user" and member_pid is not None:
                self.user_maps(info, member_pid)
            return info
        return None


def _member_sources(proc_root: str, slot_pids):
    for slot, pid_list in slot_pids:
        for pid in pid_list[:_TRIES]:
            yield "%s/%d/ns/%s" % (proc_root, pid, slot), (pid if slot == "user" else None)


def thread_sources(processes: dict, proc_root: str) -> dict:
    """NsRef -> [(/proc/<pid>/task/<tid>/ns/<slot>, pid)] for namespaces threads hold."""
    out = {}
    for proc in processes.values():
        for tid, tns in proc.threads.items():
            for slot, (ns_dev, inode) in tns.items():
                out.setdefault((SLOT_TYPE[slot], ns_dev, inode), []).append(
                    ("%s/%d/task/%d/ns/%s" % (proc_root, proc.pid, tid, slot), None))
    return out


def _scan(pid_list, proc_root, dev, slots, scan_fds, errors, scan_threads=True):
    """Steps 1 and 4 for some pids: (ProcInfo list, Holder list)."""
    procs = scan_processes(pid_list, proc_root, dev=dev, slots=slots, errors=errors, scan_threads=scan_threads)
    holders = pins.find_fd_holders([p.pid for p in procs], proc_root, errors) if scan_fds else []
    return procs, holders


def _scan_split(pid_list, proc_root, dev, slots, scan_fds, errors, workers, scan_threads=True):
    """_scan with the pids shared among `workers` processes (this one and forked helpers).

    The reading is nearly all system calls on /proc, which one Python thread
    cannot overlap (the GIL hand-off costs more than it saves), so helpers are
    forked processes.  Each writes its results with marshal to a memfd and
    exits; the child only makes system calls and never touches locks another
    thread of ours could hold.  A helper that fails is replaced by reading its
    share here, so the result never depends on the fork working.
    """
    chunks = [pid_list[i::workers] for i in range(workers)]
    helpers = []
    for chunk in chunks[1:]:
        try:
            out = os.memfd_create("nsgraph-snapshot", os.MFD_CLOEXEC)
        except (AttributeError, OSError):
            helpers.append((None, None, chunk))
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)   # 3.12+: fork with threads
            try:
                child = os.fork()
            except OSError:
                os.close(out)
                helpers.append((None, None, chunk))
                continue
        if child == 0:                                            # the helper
            status = 1
            try:
                child_errors = Counter()
                procs, holders = _scan(chunk, proc_root, dev, slots, scan_fds, child_errors, scan_threads)
                data = marshal.dumps((
                    [(p.pid, p.ppid, p.uid, p.comm, p.cmdline, p.start_ticks, p.cgroup, p.ns, p.state, p.threads)
                     for p in procs],
                    [(h.type, h.inode, h.pid, h.fd) for h in holders],
                    dict(child_errors)))
                view = memoryview(data)
                while view:
                    view = view[os.write(out, view):]
                status = 0
            finally:
                os._exit(status)
        helpers.append((child, out, chunk))

    procs, holders = _scan(chunks[0], proc_root, dev, slots, scan_fds, errors, scan_threads)
    for child, out, chunk in helpers:
        payload = None
        if child is not None:
            _, status = os.waitpid(child, 0)
            try:
                if status == 0:
                    size = os.fstat(out).st_size
                    payload = marshal.loads(os.pread(out, size, 0)) if size else None
            finally:
                os.close(out)
        if payload is None:
            if child is not None:
                errors["helper_failed"] += 1
            more_procs, more_holders = _scan(chunk, proc_root, dev, slots, scan_fds, errors, scan_threads)
        else:
            proc_rows, holder_rows, child_errors = payload
            more_procs = [ProcInfo(*row) for row in proc_rows]
            more_holders = [pins.Holder(*row) for row in holder_rows]
            errors.update(child_errors)
        procs.extend(more_procs)
        holders.extend(more_holders)
    return procs, holders


def default_workers(n_pids: int) -> int:
    """Forking pays from about a thousand processes on; more than two helpers rarely do."""
    if n_pids < 1000:
        return 1
    return max(1, min(2, len(os.sched_getaffinity(0))))


def take_snapshot(proc_root: str = "/proc", *, scan_fds: bool = True, scan_pins: bool = True,
                  workers: Optional[int] = None, scan_threads: bool = True) -> Snapshot:
    """Every process and namespace under proc_root, with nsfs metadata.

    scan_fds=False skips reading every process's fd table (about a third of
    the time); namespaces held only by an fd are then missing.  scan_threads=False
    skips /proc/<pid>/task/<tid>/ns (namespaces only a thread holds are then
    missing; the live graph's settling needs no more).  workers is
    the number of processes sharing the /proc reading (default: up to two on
    large hosts, see default_workers).
    """
    errors = Counter()
    timings = {}
    t0 = time.perf_counter()
    taken_at = time.time()
    dev = nsfs_device(proc_root)
    slots = available_slots(proc_root)

    # 1 (and 4). processes, and their fds
    pid_list = pids(proc_root)
    if workers is None:
        workers = default_workers(len(pid_list))
    if workers > 1:
        found, holders = _scan_split(pid_list, proc_root, dev, slots, scan_fds, errors, workers, scan_threads)
    else:
        found, holders = _scan(pid_list, proc_root, dev, slots, scan_fds, errors, scan_threads)
    processes = {}
    combos = {}                  # tuple(ns.items()) -> [pid, ...]
    for proc in found:
        processes[proc.pid] = proc
        combos.setdefault(tuple(proc.ns.items()), []).append(proc.pid)
    t1 = time.perf_counter()
    timings["processes"] = t1 - t0

    # 2. distinct namespaces -> where to open them; membership slots first, so a
    #    user namespace is opened through a member whose uid_map can be read.
    slot_order = {slot: i for i, slot in enumerate(NS_SLOTS)}
    sources = {}                 # NsRef -> [(slot, pid_list), ...]
    for combo, pid_list in combos.items():
        for slot, (ns_dev, inode) in combo:
            sources.setdefault((SLOT_TYPE[slot], ns_dev, inode), []).append((slot, pid_list))
    for entries in sources.values():
        entries.sort(key=lambda e: (e[0].endswith("_for_children"), slot_order[e[0]]))

    # 3. pins
    found_pins = []
    if scan_pins:
        mnt_members = {}
        for (ns_type, ns_dev, inode), entries in sources.items():
            if ns_type == "mnt":
                mnt_members[(ns_type, ns_dev, inode)] = [p for _, pl in entries for p in pl[:_TRIES]]
        own = read_ns_links(os.getpid(), proc_root, ("mnt",)).get("mnt")
        own_mnt = ("mnt", dev, own[1]) if own else None
        found_pins = pins.find_pins(mnt_members, proc_root, own_mnt, errors)
    t3 = time.perf_counter()
    timings["pins"] = t3 - t1

    # 5. ioctls per distinct namespace
    describer = _Describer(proc_root, errors)
    pin_sources, holder_sources = {}, {}
    for pin in found_pins:
        pin_sources.setdefault((pin.type, pin.dev, pin.inode), []).append(pin)
    for holder in holders:
        holder_sources.setdefault((holder.type, dev, holder.inode), []).append(holder)
    describer.known.update(sources, pin_sources, holder_sources)

    for ref, entries in sources.items():
        if describer.from_sources(ref, _member_sources(proc_root, entries)) is None:
            errors["ns_unreadable"] += 1
            describer.namespaces[ref] = NsInfo(ref[0], ref[2], ref[1])
    for ref, paths in thread_sources(processes, proc_root).items():
        if ref not in describer.namespaces and describer.from_sources(ref, paths) is None:
            errors["ns_unreadable"] += 1
            describer.namespaces[ref] = NsInfo(ref[0], ref[2], ref[1])
    for ref, found in pin_sources.items():
        info = describer.namespaces.get(describer.remap.get(ref, ref))
        if info is None:
            info = describer.from_sources(ref, ((pin.open_path, None) for pin in found))
            if info is None:
                errors["ns_unreadable"] += 1
                info = describer.namespaces[ref] = NsInfo(ref[0], ref[2], ref[1])
        info.pinned = sorted(set(info.pinned) | {pin.path for pin in found})
    for ref, found in holder_sources.items():
        info = describer.namespaces.get(describer.remap.get(ref, ref))
        if info is None:
            info = describer.from_sources(
                ref, (("%s/%d/fd/%d" % (proc_root, h.pid, h.fd), None) for h in found))
            if info is None:
                errors["ns_unreadable"] += 1
                info = describer.namespaces[ref] = NsInfo(ref[0], ref[2], ref[1])
        key = (info.dev, info.inode)
        held_by = {h.pid for h in found
                   if h.pid not in processes
                   or not any(v == key and SLOT_TYPE[s] == info.type
                              for s, v in processes[h.pid].ns.items())}
        info.holders = sorted(set(info.holders) | held_by)

    if describer.remap:
        for proc in processes.values():
            for slot, (ns_dev, inode) in list(proc.ns.items()):
                new = describer.remap.get((SLOT_TYPE[slot], ns_dev, inode))
                if new is not None:
                    proc.ns[slot] = (new[1], new[2])
    timings["ioctls"] = time.perf_counter() - t3
    timings["total"] = time.perf_counter() - t0
    return Snapshot(taken_at, processes, describer.namespaces, errors, timings)
