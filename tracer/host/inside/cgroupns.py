"""cgroup: the cgroup root as seen inside, per hierarchy.

/proc/<pid>/cgroup names the process's cgroups relative to the root of the
*reader's* cgroup namespace, and the kernel renders it when the file is read.
So the server opens a member's /proc/<pid>/cgroup, the helper reads it once
before joining the namespace (the host's view: "/system.slice/docker-1.scope")
and once after (the inside view: "/").  The namespace's root is the host path
with the inside path taken off its end.
"""

from __future__ import annotations

import os

from .procread import read_fd

JOIN = True
NEEDS_MEMBER_FILE = "cgroup"     # the server passes this file of a member, opened


def parse_cgroup_file(text: str) -> list:
    """"4:memory:/a/b" lines -> [(hierarchy id, controllers, path)]."""
    out = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and parts[0].isdigit():
            out.append((parts[0], parts[1], parts[2]))
    return out


def namespace_root(outside: str, inside: str):
    """The host path of the namespace's root, given one member's path seen from outside and inside.

    None when the member sits outside the namespace's root (inside paths
    starting with "/.."): one path alone does not tell the root then.
    """
    if inside == "/":
        return outside
    if inside.startswith("/..") or not outside.endswith(inside):
        return None
    root = outside[:len(outside) - len(inside)]
    return root or "/"


def hierarchies(outside_text: str, inside_text: str) -> list:
    outside = {h: (c, p) for h, c, p in parse_cgroup_file(outside_text)}
    out = []
    for hierarchy, controllers, inside_path in parse_cgroup_file(inside_text):
        outside_path = outside.get(hierarchy, (controllers, None))[1]
        out.append({"hierarchy": hierarchy, "controllers": controllers or ("(v2)" if hierarchy == "0" else ""),
                    "inside": inside_path, "outside": outside_path,
                    "root": namespace_root(outside_path, inside_path) if outside_path else None})
    return out


def before_join(ctx) -> str:
    """In the helper, before joining: the member's cgroup file as the host sees it."""
    return read_fd(ctx.extra["cgroup"], 1 << 20).decode("utf-8", "replace")


def collect(ctx) -> dict:
    """In the helper, inside the namespace: the same open file, rendered for the new reader
    (ctx.before is what before_join read)."""
    fd = ctx.extra["cgroup"]
    os.lseek(fd, 0, os.SEEK_SET)
    return view_from(ctx.before, read_fd(fd, 1 << 20).decode("utf-8", "replace"))


def view_from(outside_text: str, inside_text: str) -> dict:
    found = hierarchies(outside_text, inside_text)
    unified = next((h for h in found if h["hierarchy"] == "0"), None)
    main = unified or (found[0] if found else None)
    return {"root": main["root"] if main else None, "inside": main["inside"] if main else None,
            "hierarchies": found}


def fields(view: dict) -> list:
    rows = [("root (host path)", view.get("root") or "unknown"),
            ("a member's cgroup inside", view.get("inside") or "")]
    for h in view.get("hierarchies") or []:
        if h["hierarchy"] != "0":
            rows.append(("  %s:%s" % (h["hierarchy"], h["controllers"]),
                         "%s (root %s)" % (h["inside"], h["root"] or "unknown")))
    return rows
