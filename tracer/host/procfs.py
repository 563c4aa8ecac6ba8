"""Reading processes from /proc: namespaces, parent, uid, comm, cmdline, cgroup.

A process can exit at any point between listing /proc and reading its last
file (Tracee #1366 crashed on exactly that).  Here every read of a process is
allowed to fail: the process is skipped and the reason counted, never raised.

Reasons counted (Snapshot.errors / the `errors` argument):
  vanished    the process exited (ENOENT/ESRCH) before we had its namespaces
  permission  its namespace links cannot be read (EACCES/EPERM), e.g. a pid 1
              holding capabilities outside our bounding set
  malformed   an entry that is not what the kernel writes (garbage link target,
              unparsable stat); only seen with fake or foreign proc roots
  not_pid     a non-numeric name was asked for
  zombie      kept: a zombie still shows its pid and user namespaces, the other
              links are gone (lsns counts it the same way)
  partial     kept: an exiting process that lost some links while being read
"""

from __future__ import annotations

import errno
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Optional

from ..nstypes import NS_SLOTS, SLOT_TYPE

NsRef = tuple[str, int, int]  # (type, dev, inode): type is the namespace type ("pid"), never "pid_for_children"

_O_FILE = os.O_RDONLY | os.O_CLOEXEC
_GONE = (errno.ENOENT, errno.ESRCH)
_DENIED = (errno.EACCES, errno.EPERM)


@dataclass
class ProcInfo:
    pid: int
    ppid: int
    uid: int                          # owner of /proc/<pid>: the effective uid, as lsns and ps show
    comm: str
    cmdline: list
    start_ticks: int                  # /proc/<pid>/stat field 22 (tells pid reuse apart)
    cgroup: str                       # /proc/<pid>/cgroup text: "0::/..." alone on cgroup v2 hosts,
                                      # all hierarchy lines on hybrid v1/v2 hosts
    ns: dict = field(default_factory=dict)   # slot -> (dev, inode), slots present only
    state: str = ""                   # /proc/<pid>/stat field 3 ("Z" for zombies)
    # tid -> slot -> (dev, inode), for threads whose namespaces differ from the
    # process's (a thread that called unshare or setns on its own)
    threads: dict = field(default_factory=dict)


def parse_ns_link(target: str) -> Optional[tuple]:
    """"net:[4026531840]" -> ("net", 4026531840); None for anything else."""
    colon = target.find(":[")
    if colon <= 0 or not target.endswith("]"):
        return None
    digits = target[colon + 2:-1]
    if not digits.isdigit():
        return None
    return target[:colon], int(digits)


def parse_stat(data: bytes) -> Optional[tuple]:
    """/proc/<pid>/stat -> (comm, state, ppid, start_ticks, num_threads), None when malformed.

    comm sits in parentheses and may itself contain ") " and spaces, so the
    fields are counted from the last ")".
    """
    lpar = data.find(b"(")
    rpar = data.rfind(b")")
    if lpar < 0 or rpar < lpar:
        return None
    rest = data[rpar + 2:].split()
    if len(rest) < 20:
        return None
    try:
        ppid = int(rest[1])
        start = int(rest[19])
        num_threads = int(rest[17])
    except ValueError:
        return None
    return (data[lpar + 1:rpar].decode("utf-8", "replace"), rest[0].decode("ascii", "replace"), ppid, start,
            num_threads)


def available_slots(proc_root: str = "/proc") -> tuple:
    """The namespace slots this kernel has (no time namespaces before 5.6), in NS_SLOTS order."""
    for probe in ("self", "thread-self"):
        try:
            names = set(os.listdir("%s/%s/ns" % (proc_root, probe)))
        except OSError:
            continue
        return tuple(slot for slot in NS_SLOTS if slot in names)
    return NS_SLOTS


def nsfs_device(proc_root: str = "/proc") -> int:
    """The nsfs device: one superblock holds every namespace file, so one stat tells it."""
    for path in ("%s/self/ns/net" % proc_root, "/proc/self/ns/net", "/proc/self/ns/user"):
        try:
            return os.stat(path).st_dev
        except OSError:
            continue
    return 0


def _read_all(path: str, size: int = 4096) -> bytes:
    fd = os.open(path, _O_FILE)
    try:
        data = os.read(fd, size)
        if len(data) < size:
            return data
        chunks = [data]
        while True:
            data = os.read(fd, 65536)
            if not data:
                return b"".join(chunks)
            chunks.append(data)
    finally:
        os.close(fd)


def pids(proc_root: str = "/proc") -> list:
    """The process ids under proc_root (task ids of threads are not listed there)."""
    out = []
    with os.scandir(proc_root) as entries:
        for entry in entries:
            name = entry.name
            # isdigit() alone accepts "²", which int() rejects; the kernel writes ASCII.
            if name.isdigit() and name.isascii():
                out.append(int(name))
    return out


def _reason(exc: OSError) -> str:
    if exc.errno in _GONE:
        return "vanished"
    if exc.errno in _DENIED:
        return "permission"
    return "malformed"


def _parse_links(links: tuple, slots: tuple, dev: int) -> Optional[dict]:
    """The ns links of one process (None where ENOENT) -> {slot: (dev, inode)}; None if garbage."""
    ns = {}
    for slot, target in zip(slots, links):
        if target is None:
            continue
        parsed = parse_ns_link(target)
        if parsed is None or parsed[0] != SLOT_TYPE[slot]:
            return None
        ns[slot] = (dev, parsed[1])
    return ns


def scan_processes(pid_list: Iterable[int], proc_root: str = "/proc", *, dev: Optional[int] = None,
                   slots: Optional[Iterable[str]] = None,
                   errors: Optional[Counter] = None, scan_threads: bool = True) -> list:
    """ProcInfo of every pid in pid_list that can be read; the others counted in errors.
    scan_threads=False leaves ProcInfo.threads empty: a thread's links cost as much as a
    process's, and busy daemons have dozens of threads (most of a snapshot's time).

    This is the snapshot's hot loop (10 000 processes x 14 syscalls), so it
    opens by absolute path (no directory fds to open and close), takes the uid
    from the fstat of the stat file, and parses each distinct set of ns links
    and each distinct cgroup text once (processes share them).
    """
    if errors is None:
        errors = Counter()
    if dev is None:
        dev = nsfs_device(proc_root)
    slots = tuple(available_slots(proc_root) if slots is None else slots)
    suffixes = ["/ns/" + slot for slot in slots]
    readlink, oopen, oread, oclose, fstat = os.readlink, os.open, os.read, os.close, os.fstat
    o_file = _O_FILE
    link_cache = {}
    cgroup_cache = {}
    out = []
    for pid in pid_list:
        base = "%s/%d" % (proc_root, pid)
        try:
            fd = oopen(base + "/stat", o_file)
        except OSError as exc:
            errors[_reason(exc)] += 1
            continue
        try:
            # /proc/<pid>/* files are owned by the task's effective uid (lsns shows the same).
            uid = fstat(fd).st_uid
            stat = oread(fd, 4096)
        except OSError as exc:
            errors[_reason(exc)] += 1
            continue
        finally:
            oclose(fd)
        parsed = parse_stat(stat)
        if parsed is None:
            errors["malformed"] += 1
            continue
        comm, state, ppid, start, num_threads = parsed

        links = []
        failure = None
        for suffix in suffixes:
            try:
                links.append(readlink(base + suffix))
            except OSError as exc:
                if exc.errno in _GONE:
                    links.append(None)
                else:
                    failure = _reason(exc)
                    break
        if failure is not None:
            errors[failure] += 1
            continue
        key = tuple(links)
        ns = link_cache.get(key)
        if ns is None:
            ns = link_cache[key] = _parse_links(key, slots, dev)
            if ns is None:
                errors["malformed"] += 1
                continue
        if not ns:
            errors["vanished"] += 1
            continue
        if len(ns) < len(slots):
            errors["zombie" if state == "Z" else "partial"] += 1

        try:
            cmdline = _read_all(base + "/cmdline")
            cgroup_raw = _read_all(base + "/cgroup")
        except OSError as exc:
            if exc.errno in _GONE:
                errors["vanished"] += 1
                continue
            # Without ptrace access cmdline can be refused while the links were not.
            errors["permission_detail"] += 1
            cmdline = cgroup_raw = b""
        cgroup = cgroup_cache.get(cgroup_raw)
        if cgroup is None:
            cgroup = cgroup_cache[cgroup_raw] = cgroup_raw.decode("utf-8", "replace").strip()
        if cmdline:
            args = cmdline.decode("utf-8", "replace").split("\0")
            if args[-1] == "":
                args.pop()
        else:
            args = []
        threads = thread_namespaces(base, pid, suffixes, slots, dev, ns, link_cache) \
            if num_threads > 1 and scan_threads else {}
        out.append(ProcInfo(pid, ppid, uid, comm, args, start, cgroup, dict(ns), state, threads))
    return out


def thread_namespaces(base: str, pid: int, suffixes, slots, dev, proc_ns: dict, link_cache: dict) -> dict:
    """tid -> slot -> (dev, inode) for the threads of a multithreaded process whose
    namespaces differ from proc_ns (/proc/<pid>/task/<tid>/ns: a thread that called
    unshare or setns on its own holds namespaces /proc/<pid>/ns does not show).
    Threads that vanish meanwhile are skipped: they hold nothing any more."""
    out = {}
    try:
        tids = [int(t) for t in os.listdir(base + "/task") if t.isdigit() and int(t) != pid]
    except OSError:
        return out
    readlink = os.readlink
    for tid in tids:
        tbase = "%s/task/%d" % (base, tid)
        try:
            key = tuple(readlink(tbase + suffix) for suffix in suffixes)
        except OSError:
            continue
        ns = link_cache.get(key)
        if ns is None:
            ns = link_cache[key] = _parse_links(key, slots, dev)
        if ns and ns != proc_ns:
            out[tid] = dict(ns)
    return out


def read_process(pid: int, proc_root: str = "/proc", *, dev: Optional[int] = None,
                 slots: Optional[Iterable[str]] = None,
                 errors: Optional[Counter] = None) -> Optional[ProcInfo]:
    """One process, or None when it vanished or cannot be read (reason in errors).

    For the live graph's repairs.  dev and slots are per-system constants
    (nsfs_device(), available_slots()); pass them when calling often.
    """
    if errors is None:
        errors = Counter()
    if isinstance(pid, bool) or not isinstance(pid, int):
        try:
            pid = int(str(pid), 10)
        except ValueError:
            errors["not_pid"] += 1
            return None
    if pid <= 0:
        errors["not_pid"] += 1
        return None
    found = scan_processes((pid,), proc_root, dev=dev, slots=slots, errors=errors)
    return found[0] if found else None


def read_ns_links(pid: int, proc_root: str = "/proc", slots: Iterable[str] = NS_SLOTS) -> dict:
    """slot -> (type, inode) of one process, for quick re-checks; missing slots left out."""
    out = {}
    for slot in slots:
        try:
            parsed = parse_ns_link(os.readlink("%s/%d/ns/%s" % (proc_root, pid, slot)))
        except OSError:
            continue
        if parsed is not None:
            out[slot] = parsed
    return out


def read_cmdline_cgroup(pid: int, proc_root: str = "/proc", limit: int = 65536) -> tuple:
    """(argv, cgroup text) of one process now; either is None when it could not be read
    (the process vanished, or the file is refused).  For the live graph's lazy reads."""
    cmdline = cgroup = None
    try:
        with open("%s/%d/cmdline" % (proc_root, pid), "rb") as f:
            raw = f.read(limit)
        args = raw.split(b"\0")
        if args and args[-1] == b"":
            args.pop()
        cmdline = [a.decode("utf-8", "replace") for a in args]
        with open("%s/%d/cgroup" % (proc_root, pid), "rb") as f:
            cgroup = f.read(limit).decode("utf-8", "replace").strip()
    except OSError:
        pass
    return cmdline, cgroup


def is_zombie(pid: int, start_ticks: Optional[int], proc_root: str = "/proc") -> bool:
    """pid is still the zombie that started at start_ticks (not reaped, pid not reused)."""
    try:
        with open("%s/%d/stat" % (proc_root, pid), "rb") as f:
            parsed = parse_stat(f.read(512))
    except OSError:
        return False
    return parsed is not None and parsed[1] == "Z" and start_ticks in (None, parsed[3])


def is_running(pid: int, proc_root: str = "/proc") -> bool:
    """pid exists now and has not exited (a zombie has: its exit event came and went)."""
    try:
        with open("%s/%d/stat" % (proc_root, pid), "rb") as f:
            data = f.read(512)
    except OSError:
        return False
    rpar = data.rfind(b")")
    return rpar > 0 and data[rpar + 2:rpar + 3] not in (b"Z", b"X")
