"""What a demo run did to the namespace graph: pure functions of a run and the Graph JSON.

A run is matched to the graph by identities only it has, never by "whatever
happened meanwhile", so two demos running at the same time each get their own
namespaces and join sessions:
  - the container the creating task was in (the graph keeps it in the namespace's
    creator, from the cgroup the kernel saw at the clone/unshare), so a container
    gone before anything could be read still has its namespaces, however many
    demos were launched at the same moment;
  - its container's name (the graph names the namespaces of a container's processes);
  - namespace inodes it read from /proc/<pid>/ns while it ran, or printed itself
    (`ls -la /proc/self/ns/`, `readlink`), resolved to the graph namespace of that
    (type, inode) alive during the run (inodes are recycled at once);
  - join sessions made by the processes it started (the docker exec'd command, nsenter).
The time window only separates generations of a recycled inode and decides
"created" (made during the run) from "joined".  The host's own namespaces, which a
container shares unless told otherwise (user, time, cgroup on cgroup v1, pid with
--pid host), are neither: the run made nothing there and joined nothing.
"""

from __future__ import annotations

import re
import time
from typing import Optional

from tracer.containers.records import names_container
from tracer.nstypes import MEMBER_TYPES

from .run import Run
from .scenarios import DOCKER, SCENARIOS

# Seconds around a run's start and end within which its namespaces may be stamped:
# event time stamps and the run's own clock readings differ by a little.
SLACK_S = 0.5
# A join session may close a little after the run recorded its end (the exec is the last step).
JOIN_LATE_S = 5.0

_LS_LINK = re.compile(r"(\w+) -> (\w+):\[(\d+)\]")
_READLINK = re.compile(r"^(\w+):\[(\d+)\]$", re.M)


def links_in_output(output: str) -> dict:
    """type -> inode printed by `ls -la /proc/self/ns/` or `readlink /proc/self/ns/X`.

    The demo's own report of its namespaces: a `docker run --rm` container is
    usually gone before /proc/<pid>/ns can be read from outside.
    """
    out = {}
    for name, kind, inode in _LS_LINK.findall(output or ""):
        if name == kind and kind in MEMBER_TYPES:
            out[kind] = int(inode)
    for kind, inode in _READLINK.findall(output or ""):
        if kind in MEMBER_TYPES:
            out.setdefault(kind, int(inode))
    return out


def namespaces_for_run(run: Run, graph: Optional[dict], now: Optional[float] = None) -> dict:
    """{"namespaces": {"created": [ids], "joined": [ids]}, "joins": [join ids]} from Graph JSON."""
    created, joined, joins = [], [], []
    result = {"namespaces": {"created": created, "joined": joined}, "joins": joins}
    if not graph:
        return result
    scenario = SCENARIOS.get(run.scenario)
    joins_only = scenario is not None and scenario.joins
    start = (run.started or run.created) - SLACK_S
    end = (run.ended or (time.time() if now is None else now)) + SLACK_S
    spaces = graph["namespaces"]
    by_id = {n["id"]: n for n in spaces}

    ids = []
    made_here = set()
    if run.container and not joins_only:
        made_here = _made_in_container(spaces, run, start, end)
        ids += [n["id"] for n in spaces if n["id"] in made_here]
        ids += _container_namespaces(graph, run.container)
    observed = {} if joins_only else links_in_output(run.output)
    observed.update(run.observed_ns)
    ids += [i for i in (_resolve(spaces, t, inode, start, end, made_here) for t, inode in observed.items())
            if i]
    for join in _joins_of(graph, run.pids, start, end):
        joins.append(join["id"])
        ids += join["target"].values()
    host_ids = set(graph["host_ns"].values())
    ids = [i for i in ids if i not in host_ids]
    if not ids and scenario is not None and scenario.kind == DOCKER and not joins_only:
        ids += _made_by_one_runc(spaces, run.container, start, end)

    for ns_id in _unique(ids):
        ns = by_id.get(ns_id)
        if ns is not None and not joins_only and not _made_elsewhere(ns, run) and (
                start <= (ns["created"] or 0.0) <= end or _found_in_own_container(ns, run, start)):
            created.append(ns_id)
        else:
            joined.append(ns_id)
    result["joins"] = _unique(joins)
    return result


def _made_elsewhere(ns: dict, run: Run) -> bool:
    """Made by a task of another container (`--network container:myapp` while myapp was
    starting): the run joined it, even when it was made during the run."""
    made_in = (ns["creator"] or {}).get("container")
    return bool(made_in) and not names_container(made_in, run.container or "", run.container_id)


def _found_in_own_container(ns: dict, run: Run, start: float) -> bool:
    """Owned by the container the run made (its name carries the run id), and known only
    from /proc (no creating event applied: a snapshot showed it before that event, or a
    repair found it after the run): the run made it all the same, though the model has no
    time stamp for it, or the repair's."""
    return bool(run.container) and (ns["created"] is None or (ns.get("repaired") and ns["created"] >= start)) \
        and names_container(run.container, ns.get("container"), ns.get("container_id"))


def _made_in_container(spaces: list, run: Run, start: float, end: float) -> set:
    """The namespaces made during the run by a task in the run's own container (by name,
    or by the id prefix the graph knew it by before Docker named it)."""
    return {n["id"] for n in spaces
            if names_container((n["creator"] or {}).get("container") or "", run.container, run.container_id)
            and start <= (n["created"] or 0.0) <= end}


def _container_namespaces(graph: dict, name: str) -> list:
    """The namespaces the graph attributes to the container, and its processes' namespaces."""
    ids = [n["id"] for n in graph["namespaces"] if n["container"] == name]
    for proc in graph["processes"]:
        if proc["container"] == name:
            ids += proc["ns"].values()
    return ids


def _alive_during(ns: dict, start: float, end: float) -> bool:
    return (ns["created"] or 0.0) <= end and (ns["ended"] is None or ns["ended"] >= start)


def _resolve(spaces: list, ns_type: str, inode: int, start: float, end: float,
             mine: frozenset = frozenset()) -> Optional[str]:
    """The id of the (type, inode) namespace alive during the run: the one its own container
    made (a neighbour's container may get the same inode moments later), else the newest
    generation alive during the run, else any known one, newest first."""
    found = [n for n in spaces if n["type"] == ns_type and n["inode"] == inode]
    live = [n for n in found if n["id"] in mine] or [n for n in found if _alive_during(n, start, end)] or found
    return max(live, key=lambda n: n["generation"])["id"] if live else None


def _joins_of(graph: dict, pids: list, start: float, end: float) -> list:
    """Join sessions opened by, or exec'ing in, one of the run's own processes during it."""
    mine = set(pids)
    if not mine:
        return []
    return [j for j in graph["joins"]
            if (j["pid"] in mine or j["exec_pid"] in mine) and start <= j["start"] <= end + JOIN_LATE_S]


def _made_by_one_runc(spaces: list, container: Optional[str], start: float, end: float) -> list:
    """Last resort for a container gone before anything was read and never named by the
    catalog: the namespaces runc created during the run, when exactly one runc process
    did so (two demos at once give two, and then nothing is claimed).  Namespaces the
    graph gives to another container are someone else's."""
    creators = {}
    for ns in spaces:
        creator = ns["creator"] or {}
        if ns["container"] not in (None, container):
            continue
        if str(creator.get("comm", "")).startswith("runc") and start <= (ns["created"] or 0.0) <= end:
            creators.setdefault(creator.get("pid"), []).append(ns["id"])
    return next(iter(creators.values())) if len(creators) == 1 else []


def _unique(items) -> list:
    seen, out = set(), []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out
