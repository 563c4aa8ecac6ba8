"""mnt: the root, the number of mounts and the first mounts, as a process inside sees them.

/proc/<pid>/mountinfo lists the mounts of the process's mount namespace, with
paths relative to its root: what `findmnt` or `cat /proc/self/mountinfo`
print inside.  A mount namespace with no process left (kept by a bind mount
or an fd) is read by the helper after joining it (setns sets the helper's
root to the namespace's root), through the /proc it opened before.
"""

from __future__ import annotations

from ..pins import unescape
from .procread import text_at

JOIN = False            # read through a member; joined only when it has none
LISTED = 20             # mounts listed in a view (all are counted)


def parse_mountinfo(text: str) -> list:
    """mountinfo lines -> [{"id", "parent", "root", "target", "options", "fstype", "source"}].

    Lines without the " - " separator or with too few fields are left out.
    """
    out = []
    for line in text.splitlines():
        cols = line.split(" ")
        try:
            sep = cols.index("-", 6)
            out.append({"id": int(cols[0]), "parent": int(cols[1]), "root": unescape(cols[3]),
                        "target": unescape(cols[4]), "options": cols[5],
                        "fstype": cols[sep + 1], "source": unescape(cols[sep + 2])})
        except (ValueError, IndexError):
            continue
    return out


def root_mount(mounts: list):
    """The mount on top at "/" (mounts stacked on / each list the one below as parent)."""
    at_root = [m for m in mounts if m["target"] == "/"]
    below = {m["parent"] for m in at_root}
    top = [m for m in at_root if m["id"] not in below]
    return (top or at_root or [None])[-1]


def view_from(text: str) -> dict:
    mounts = parse_mountinfo(text)
    root = root_mount(mounts)
    fstypes = {}
    for m in mounts:
        fstypes[m["fstype"]] = fstypes.get(m["fstype"], 0) + 1
    return {
        "root": {k: root[k] for k in ("source", "fstype", "root", "options")} if root else None,
        "count": len(mounts),
        "mounts": [{k: m[k] for k in ("target", "source", "fstype")} for m in mounts[:LISTED]],
        "fstypes": dict(sorted(fstypes.items(), key=lambda kv: (-kv[1], kv[0]))),
    }


def read_member(dirfd: int, ns_fd: int) -> dict:
    return view_from(text_at(dirfd, "mountinfo"))


def collect(ctx) -> dict:
    """In the helper, inside the namespace (only for a namespace without members)."""
    return view_from(text_at(ctx.proc, "self/mountinfo"))


def fields(view: dict) -> list:
    root = view.get("root") or {}
    rows = [("root", "%s %s" % (root.get("source", "?"), root.get("fstype", "?")) if root else "none"),
            ("mounts", str(view.get("count", 0)))]
    lines = ["%s %s %s" % (m["target"], m["source"], m["fstype"]) for m in view.get("mounts", [])]
    if view.get("count", 0) > len(lines):
        lines.append("… (%d more)" % (view["count"] - len(lines)))
    rows.append(("first mounts", lines))
    return rows
