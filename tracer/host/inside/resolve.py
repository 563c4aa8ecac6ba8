"""From what a user or a request names to NsTargets, through the graph's public lookups.

A namespace is named by the graph's id ("net:4:4026531840:0"), by type and
inode ("net:4026531840", or the kernel's "net:[4026531840]"), or by a process
(pid, or a container's init) and a type.  Names are checked by shape first
(parse_ref) and then looked up in the live graph, so nothing that is not a
namespace the graph knows ever reaches a reader.  `graph` is anything with the
NamespaceGraph lookups namespace(ident) and process(pid).
"""

from __future__ import annotations

import re
from typing import Optional

from ...nstypes import MEMBER_TYPES
from .target import NsTarget

MAX_REF_LENGTH = 80
_TYPES = "|".join(MEMBER_TYPES)
_REF = re.compile(r"(?P<type>%s):(?:(?P<dev>\d{1,20}):(?P<inode>\d{1,20}):(?P<gen>\d{1,10})"
                  r"|\[?(?P<short>\d{1,20})\]?)" % _TYPES)


class BadRef(ValueError):
    """A namespace name that is not of a known shape."""


def parse_ref(text: str) -> str:
    """The graph lookup key for a namespace name; BadRef when it has no known shape."""
    if not isinstance(text, str) or len(text) > MAX_REF_LENGTH:
        raise BadRef("a namespace id is at most %d characters" % MAX_REF_LENGTH)
    m = _REF.fullmatch(text)
    if m is None:
        raise BadRef("%r is not a namespace id: use TYPE:DEV:INODE:GEN (net:4:4026531840:0) or "
                     "TYPE:INODE (net:4026531840), TYPE one of %s" % (text[:MAX_REF_LENGTH], ", ".join(MEMBER_TYPES)))
    if m.group("short"):
        return "%s:%s" % (m.group("type"), int(m.group("short")))
    return "%s:%d:%d:%d" % (m.group("type"), int(m.group("dev")), int(m.group("inode")), int(m.group("gen")))


def host_ids(graph) -> set:
    """The ids of the host's namespaces: those of pid 1, or of kthreadd (pid 2) when pid 1 is unreadable."""
    for pid in (1, 2):
        proc = graph.process(pid)
        if proc and proc.get("ns"):
            return set(proc["ns"].values())
    return set()


def label(detail: dict, hosts: set) -> str:
    if detail.get("id") in hosts:
        return "host"
    if detail.get("container"):
        return "container %s" % detail["container"]
    members = detail.get("processes") or []
    if members:
        return "pid %d (%s)" % (members[0]["pid"], members[0].get("comm", "?"))
    if detail.get("pinned"):
        return "pinned at %s" % detail["pinned"][0]
    return "no members"


def target_from(detail: dict, hosts: set) -> NsTarget:
    """An NsTarget from the graph's namespace detail (graph.namespace())."""
    return NsTarget(type=detail["type"], inode=int(detail["inode"]), dev=int(detail.get("dev") or 0),
                    id=detail.get("id"), ns_id=detail.get("ns_id"), pids=list(detail.get("pids") or []),
                    pinned=list(detail.get("pinned") or []), label=label(detail, hosts))


def lookup(graph, ref: str) -> Optional[dict]:
    """The graph's detail of the namespace a checked ref names, or None."""
    return graph.namespace(parse_ref(ref))


def of_process(graph, pid: int, ns_type: str) -> Optional[dict]:
    """The detail of process pid's namespace of ns_type, or None when the graph has no such process."""
    proc = graph.process(pid)
    if not proc:
        return None
    ident = (proc.get("ns") or {}).get(ns_type)
    return graph.namespace(ident) if ident else None
