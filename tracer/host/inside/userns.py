"""user: the uid and gid maps, the owner's uid, whether setgroups is allowed.

All of it is per namespace in /proc/<pid>/{uid_map,gid_map,setgroups} of any
member, and in the nsfs ioctls on the namespace itself (NS_GET_OWNER_UID,
NS_GET_PARENT).  Maps are shown relative to the parent user namespace, as a
process inside reads them.  A user namespace with no process left is read by
the helper after joining it (alone, and last: joining a user namespace gives
up the helper's privileges outside it).
"""

from __future__ import annotations

import os
from collections import Counter

from .. import nsfs
from .procread import optional_text_at

JOIN = False            # read through a member; joined only when it has none


def parse_id_map(text: str) -> list:
    """uid_map/gid_map lines -> [{"inside", "outside", "count"}]."""
    out = []
    for line in text.splitlines():
        cols = line.split()
        if len(cols) == 3 and all(c.isdigit() for c in cols):
            out.append({"inside": int(cols[0]), "outside": int(cols[1]), "count": int(cols[2])})
    return out


def maps_to(id_map: list, inside: int):
    """The outside id of an inside id, or None when it is not mapped."""
    for entry in id_map:
        if entry["inside"] <= inside < entry["inside"] + entry["count"]:
            return entry["outside"] + inside - entry["inside"]
    return None


def depth(ns_fd: int) -> int:
    """How many user namespaces lie above this one (the initial one: 0)."""
    levels, fd = 0, os.dup(ns_fd)
    try:
        while True:
            ref, parent = nsfs.get_parent(fd, Counter(), keep=True)
            if ref is None:
                return levels
            os.close(fd)
            fd = parent
            levels += 1
    finally:
        os.close(fd)


def identity(ns_fd: int) -> dict:
    """What the nsfs ioctls say (asked from outside: inside, the parent is out of scope)."""
    return {"owner_uid": nsfs.owner_uid(ns_fd), "depth": depth(ns_fd)}


def view_from(uid_text, gid_text, setgroups_text, ident: dict) -> dict:
    uid_map, gid_map = parse_id_map(uid_text or ""), parse_id_map(gid_text or "")
    return {"uid_map": uid_map, "gid_map": gid_map,
            "setgroups": (setgroups_text or "").strip() or None,
            "owner_uid": ident["owner_uid"], "depth": ident["depth"],
            "root_uid_outside": maps_to(uid_map, 0)}


def read_member(dirfd: int, ns_fd: int) -> dict:
    return view_from(optional_text_at(dirfd, "uid_map"), optional_text_at(dirfd, "gid_map"),
                     optional_text_at(dirfd, "setgroups"), identity(ns_fd))


def before_join(ctx) -> dict:
    return identity(ctx.ns_fd)


def collect(ctx) -> dict:
    """In the helper, inside the namespace (only for a namespace without members)."""
    return view_from(optional_text_at(ctx.proc, "self/uid_map"), optional_text_at(ctx.proc, "self/gid_map"),
                     optional_text_at(ctx.proc, "self/setgroups"), ctx.before)


def _map_lines(id_map: list) -> list:
    return ["%d %d %d" % (e["inside"], e["outside"], e["count"]) for e in id_map] or ["(empty: nothing mapped)"]


def fields(view: dict) -> list:
    root = view.get("root_uid_outside")
    return [("uid_map", _map_lines(view.get("uid_map") or [])),
            ("gid_map", _map_lines(view.get("gid_map") or [])),
            ("setgroups", view.get("setgroups") or ""),
            ("owner uid", "" if view.get("owner_uid") is None else str(view["owner_uid"])),
            ("root inside is uid", "unmapped" if root is None else str(root)),
            ("depth", str(view.get("depth", "")))]
