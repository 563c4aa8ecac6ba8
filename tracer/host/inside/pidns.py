"""pid: the processes as `ps` inside would list them, with the pids seen inside.

No helper is needed: /proc/<pid>/status has an NSpid line with the process's
pid in every pid namespace it belongs to, from the reader's (the host's) down
to its own.  A namespace at depth d (the host's is 0) sees every process whose
pid namespace is it or one of its descendants, under the pid NSpid[d].  Which
namespaces descend from the target is asked of the kernel (NS_GET_PARENT),
once per distinct namespace.  Each listed process is read through its own
/proc/<pid> directory fd, so a pid reused meanwhile is never mistaken for it.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Optional

from .. import nsfs
from ..procfs import parse_ns_link, pids
from .procread import GONE, O_DIR, read_at

JOIN = False
MAX_LISTED = 5000      # processes listed in a view (all are counted)


def parse_status(text: str) -> dict:
    """The fields of /proc/<pid>/status the view needs: name, state, ppid, uid, nspid.

    NSpid comes after the others, so reading stops there (status has ~55 lines)."""
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == "Name":
            out["comm"] = value.strip()
        elif key == "State":
            out["state"] = value.strip()[:1]
        elif key == "PPid":
            out["ppid"] = int(value)
        elif key == "Uid":
            out["uid"] = int(value.split()[0])
        elif key == "NSpid":
            out["nspid"] = [int(v) for v in value.split()]
            break
    return out


def _chain(path: str, errors: Counter) -> list:
    """Inodes of the pid namespace at path and of its ancestors, nearest first."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        errors["vanished"] += 1
        return []
    chain = [os.fstat(fd).st_ino]
    try:
        while True:
            ref, parent = nsfs.get_parent(fd, errors, keep=True)
            os.close(fd)
            fd = parent
            if ref is None:
                return chain
            chain.append(ref[1])
    finally:
        if fd is not None:
            os.close(fd)


class Visibility:
    """Whether a pid namespace (by inode) is the target or one of its descendants."""

    def __init__(self, target_inode: int, errors: Counter):
        self.target = target_inode
        self.known = {target_inode: True}
        self.errors = errors

    def visible(self, inode: int, link_path: str) -> bool:
        known = self.known.get(inode)
        if known is None:
            chain = _chain(link_path, self.errors)
            if not chain or chain[0] != inode:
                return False      # the process moved or exited meanwhile: decide next time
            if self.target in chain:
                # The process's namespace and its ancestors up to the target are the
                # target or below it; the target's own ancestors are not.
                k = chain.index(self.target)
                self.known.update((node, i <= k) for i, node in enumerate(chain))
            else:
                self.known.update((node, False) for node in chain)
            known = self.known[inode]
        return known


def _read_process(pid: int, vis: Optional[Visibility], proc_root: str, errors: Counter):
    """(status dict, argv) of one visible process, through its /proc dir fd; None if not.

    vis None: every process of this /proc is visible (the target is its own pid namespace).
    """
    try:
        dirfd = os.open("%s/%d" % (proc_root, pid), O_DIR)
    except OSError:
        errors["vanished"] += 1
        return None
    try:
        if vis is not None:
            # Again through the directory fd: the same process as the status read below.
            parsed = parse_ns_link(os.readlink("ns/pid", dir_fd=dirfd))
            if parsed is None:
                errors["malformed"] += 1
                return None
            if not vis.visible(parsed[1], "%s/%d/ns/pid" % (proc_root, pid)):
                return None
        status = parse_status(read_at(dirfd, "status", 65536).decode("utf-8", "replace"))
        cmdline = read_at(dirfd, "cmdline", 65536)
    except OSError as exc:
        errors["vanished" if exc.errno in GONE else "unreadable"] += 1
        return None
    except ValueError:
        errors["malformed"] += 1
        return None
    finally:
        os.close(dirfd)
    if "nspid" not in status:
        errors["malformed"] += 1
        return None
    argv = cmdline.decode("utf-8", "replace").split("\0")
    if argv and argv[-1] == "":
        argv.pop()
    return status, argv


def procfs_pid_ns(proc_root: str = "/proc") -> Optional[int]:
    """The inode of the pid namespace this /proc shows at depth 0 (None if it cannot tell)."""
    try:
        with open(proc_root + "/self/status", "rb") as handle:
            status = parse_status(handle.read(65536).decode("utf-8", "replace"))
    except (OSError, ValueError):
        return None
    if len(status.get("nspid", ())) != 1:
        return None
    try:
        parsed = parse_ns_link(os.readlink(proc_root + "/self/ns/pid"))
    except OSError:
        return None
    return parsed[1] if parsed else None


def scan(target_inode: int, proc_root: str = "/proc", errors: Optional[Counter] = None) -> dict:
    """The pid namespace with inode target_inode, as a process inside sees it.

    The caller holds an fd on the namespace, so its inode cannot be recycled
    while this runs.  {"depth", "count", "init", "processes", "truncated",
    "skipped"}; count 0 means no process is left in it.  Processes whose
    namespace cannot be read (a pid 1 with capabilities beyond ours) are
    counted in "skipped", except for /proc's own pid namespace, which sees them
    all.
    """
    if errors is None:
        errors = Counter()
    vis = None if target_inode == procfs_pid_ns(proc_root) else Visibility(target_inode, errors)
    found = {}
    depth = 0 if vis is None else None
    for pid in pids(proc_root):
        if vis is not None:
            try:
                parsed = parse_ns_link(os.readlink("%s/%d/ns/pid" % (proc_root, pid)))
            except OSError as exc:
                errors["vanished" if exc.errno in GONE else "unreadable"] += 1
                continue
            if parsed is None or not vis.visible(parsed[1], "%s/%d/ns/pid" % (proc_root, pid)):
                continue
        got = _read_process(pid, vis, proc_root, errors)
        if got is None:
            continue
        status, argv = got
        if depth is None and vis is not None and parsed[1] == target_inode:
            depth = len(status["nspid"]) - 1
        found[pid] = (status, argv)
    skipped = {k: v for k, v in errors.items() if k in ("unreadable", "malformed")}
    if depth is None:
        return {"depth": None, "count": 0, "init": None, "processes": [], "truncated": False,
                "skipped": skipped}
    inside = {pid: st["nspid"][depth] for pid, (st, _argv) in found.items() if len(st["nspid"]) > depth}
    processes = []
    for pid, (st, argv) in found.items():
        if pid not in inside:
            continue
        processes.append({
            "pid": inside[pid], "ppid": inside.get(st.get("ppid"), 0), "host_pid": pid,
            "comm": st.get("comm", ""), "state": st.get("state", ""), "uid": st.get("uid"),
            "cmdline": " ".join(argv) if argv else "[%s]" % st.get("comm", ""),
        })
    processes.sort(key=lambda p: p["pid"])
    init = next((p for p in processes if p["pid"] == 1), None)
    return {"depth": depth, "count": len(processes), "init": init,
            "processes": processes[:MAX_LISTED], "truncated": len(processes) > MAX_LISTED,
            "skipped": skipped}


def fields(view: dict) -> list:
    """The count, init, then `ps -o pid,ppid,args` rows as one list."""
    init = view.get("init")
    rows = [("processes", str(view.get("count", 0))),
            ("init (pid 1)", "%s (host pid %d)" % (init["cmdline"], init["host_pid"]) if init else "none")]
    lines = ["%5s %5s %s" % ("PID", "PPID", "COMMAND")]
    lines += ["%5d %5d %s" % (p["pid"], p["ppid"], p["cmdline"][:200]) for p in view.get("processes", [])]
    if view.get("truncated"):
        lines.append("… (%d more)" % (view["count"] - len(view["processes"])))
    rows.append(("ps", lines))
    return rows
