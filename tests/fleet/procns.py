"""Ground truth for the fleet tests: every process's namespaces, read from /proc.

Standard library only, because it also runs inside the kernel-matrix VM (copied there
with the project) and on hosts where nsgraph is not importable: `python3 procns.py`
prints the JSON.  It is deliberately not nsgraph's own reader (tracer/host/): the
ground truth must not come from the code under test.
"""

from __future__ import annotations

import json
import os
import sys

SLOTS = ("mnt", "pid", "pid_for_children", "net", "uts", "ipc", "user", "cgroup", "time", "time_for_children")


def read_process(pid: int):
    """{"start": ticks, "comm", "state", "ns": {slot: inode}} or None when it vanished."""
    base = "/proc/%d" % pid
    try:
        with open(base + "/stat", "rb") as f:
            stat = f.read().decode("utf-8", "replace")
        rest = stat[stat.rindex(")") + 2:].split()
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        ns = {}
        for slot in SLOTS:
            try:
                ns[slot] = os.stat("%s/ns/%s" % (base, slot)).st_ino
            except FileNotFoundError:
                continue        # a kernel without this namespace type
    except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
        return None
    return {"start": int(rest[19]), "comm": comm, "state": rest[0], "ns": ns}


def snapshot() -> dict:
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            info = read_process(int(name))
            if info is not None:
                out[int(name)] = info
    return out


def compare(graph: dict, before: dict, after: dict) -> list:
    """Where a Graph JSON disagrees with /proc read before and after it.

    Only processes that look the same in both reads are held against the graph (a
    process born, exec'd or moved between them may be either way), zombies aside.
    Checked: every stable process is in the graph with exactly its namespaces; every
    namespace such a process is in is alive in the graph; no process of the graph is
    absent from both reads.
    """
    procs = {p["pid"]: p for p in graph.get("processes", [])}
    alive = {(ns["type"], ns["inode"]) for ns in graph.get("namespaces", []) if ns.get("alive")}
    problems = []
    for pid, a in before.items():
        b = after.get(pid)
        if b is None or a["start"] != b["start"] or a["ns"] != b["ns"] or "Z" in (a["state"], b["state"]):
            continue
        got = procs.get(pid)
        if got is None:
            problems.append("pid %d (%s) is in /proc but not in the graph" % (pid, a["comm"]))
            continue
        inodes = {slot: int(ident.split(":")[2]) for slot, ident in (got.get("ns") or {}).items()}
        want = {slot: inode for slot, inode in a["ns"].items() if slot in inodes or slot in ("mnt", "pid", "net", "uts", "ipc", "user", "cgroup")}
        if {s: inodes.get(s) for s in want} != want:
            problems.append("pid %d (%s): graph %s, /proc %s" % (pid, a["comm"], inodes, a["ns"]))
        for slot, inode in a["ns"].items():
            kind = slot.replace("_for_children", "")
            if (kind, inode) not in alive:
                problems.append("namespace %s:%d (pid %d's %s) is not alive in the graph" % (kind, inode, pid, slot))
    for pid in procs:
        if pid not in before and pid not in after:
            problems.append("pid %d (%s) is in the graph but not in /proc" % (pid, procs[pid].get("comm")))
    return sorted(set(problems))


if __name__ == "__main__":
    json.dump(snapshot(), sys.stdout)
