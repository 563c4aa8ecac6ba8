"""`nsgraph snapshot`: every namespace now, like lsns, with containers and hierarchy.

Reads /proc and nsfs only: no eBPF, no root needed for your own processes
(root sees every process).
"""

from __future__ import annotations

import argparse
import json
import sys

from ..exitcodes import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from ..nstypes import DISPLAY_ORDER, MEMBER_TYPES, parse_type_list
from ..text import printable

EXAMPLES = """\
examples:
  nsgraph snapshot                 # table: namespaces, processes, containers, hierarchy
  nsgraph snapshot --type net      # network namespaces only
  nsgraph snapshot --type pid,net  # pid and network namespaces (same as --type pid --type net)
  nsgraph snapshot --json | jq '.namespaces[] | select(.container != null)'
  nsgraph snapshot --dot | dot -Tsvg > ns.svg

--json prints one object (the Graph JSON of docs/ARCHITECTURE.md); each entry of its
"namespaces" list has type, inode, id, pids (member processes, host pids), container
(name or null), owner (inode of the owning user namespace), parent (pid and user
namespaces), pinned (nsfs bind-mount paths) and holders (pids holding an fd).
Child pid and user namespaces are indented under their parents in the table.
Container names come from the Docker engine when reachable, else from cgroup paths.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "snapshot", help="list every namespace now (lsns-like, with containers and hierarchy)",
        description="List every namespace on this machine now: members, containers, owners, "
                    "parents and pins. Works without eBPF.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="one JSON object (see below)")
    out.add_argument("--dot", action="store_true", help="Graphviz DOT")
    parser.add_argument("--type", action="append", metavar="TYPES",
                        help="only these namespace types (comma-separated, repeatable): "
                             + ",".join(MEMBER_TYPES))
    parser.add_argument("--no-docker", action="store_true",
                        help="do not ask the Docker engine for names (cgroup paths only)")
    parser.set_defaults(func=run)
    return parser


def build_graph(docker: bool = True):
    from ..containers.cgroups import parse_cgroup
    from ..containers.engines import open_catalogs
    from ..containers.records import container_from_ref
    from ..graph.model import NamespaceGraph
    from ..graph.procreader import LiveProcReader
    from ..host.snapshot import take_snapshot
    catalog = None
    if docker:
        # start() returns at the first connection attempt: a long wait costs nothing
        # without Docker, and a busy engine still names every container.
        catalog = open_catalogs().start(wait=15.0)
        resolve = catalog.resolve
    else:
        def resolve(pid, cgroup):
            ref = parse_cgroup(cgroup) if cgroup else None
            return container_from_ref(ref) if ref else None
    try:
        graph = NamespaceGraph(reader=LiveProcReader(resolve))
        snap = take_snapshot()
        graph.load_snapshot(snap, resolve)
    finally:
        if catalog is not None:
            catalog.close(timeout=1.0)
    return graph, snap


def run(args) -> int:
    try:
        types = parse_type_list(args.type)
    except ValueError as exc:
        print("nsgraph snapshot: %s" % exc, file=sys.stderr)
        return EXIT_USAGE
    try:
        graph, snap = build_graph(docker=not args.no_docker)
    except OSError as exc:
        print("nsgraph snapshot: cannot read /proc (%s); is /proc mounted?" % exc, file=sys.stderr)
        return EXIT_FAILURE
    if args.dot:
        sys.stdout.write(graph.to_dot())
        return EXIT_OK
    data = graph.to_json(include_ended=False)
    if types:
        data["namespaces"] = [n for n in data["namespaces"] if n["type"] in types]
    data["errors"] = dict(snap.errors)
    if args.json:
        json.dump(data, sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
        return EXIT_OK
    sys.stdout.write(render_table(data))
    skipped = {k: v for k, v in snap.errors.items() if k in ("vanished", "permission", "malformed")}
    if skipped:
        print("(skipped: %s)" % ", ".join("%d %s" % (v, k) for k, v in sorted(skipped.items())),
              file=sys.stderr)
    return EXIT_OK


def render_table(data: dict) -> str:
    """lsns-like columns; pid and user namespaces as trees under their parents."""
    procs = {p["pid"]: p for p in data.get("processes", [])}
    spaces = [n for n in data["namespaces"] if n.get("alive", True)]
    by_id = {n["id"]: n for n in spaces}
    rows = []
    for t in DISPLAY_ORDER:
        of_type = sorted((n for n in spaces if n["type"] == t), key=lambda n: n["inode"])
        if t in ("pid", "user"):
            rows.extend(_tree_order(of_type, by_id))
        else:
            rows.extend((n, 0) for n in of_type)
    header = ("NS", "TYPE", "NPROCS", "PID", "USER", "CONTAINER", "COMMAND")
    lines = []
    for n, depth in rows:
        pids = n["pids"]
        first = procs.get(pids[0]) if pids else None
        ns = ("  " * depth + ("└─" if depth else "")) + str(n["inode"])
        command = first["cmdline"] if first else ""
        if not pids:
            if n["pinned"]:
                command = "(pinned: %s)" % ", ".join(n["pinned"])
            elif n["holders"]:
                command = "(held by pid %s)" % ", ".join(map(str, n["holders"]))
            else:
                command = "(kept alive by its children)"
        lines.append((ns, n["type"], str(len(pids)), str(pids[0]) if pids else "-",
                      str(first["uid"]) if first else "-", printable(n.get("container") or "-"),
                      printable(command)[:120]))
    widths = [max(len(r[i]) for r in lines + [header]) for i in range(len(header) - 1)]
    out = []
    for row in [header] + lines:
        out.append("  ".join(c.rjust(w) if i == 2 else c.ljust(w)
                             for i, (c, w) in enumerate(zip(row[:-1], widths))) + "  " + row[-1])
    return "\n".join(out) + "\n"


def _tree_order(spaces: list, by_id: dict) -> list:
    """(namespace, depth) with each child right under its parent; a namespace whose parent
    is not listed (ended, or not ours to see) is a root."""
    kids, roots = {}, []
    for n in spaces:
        parent = n.get("parent_id")
        if parent in by_id and parent != n["id"]:
            kids.setdefault(parent, []).append(n)
        else:
            roots.append(n)
    rows, shown = [], set()

    def walk(node, depth):
        shown.add(node["id"])
        rows.append((node, depth))
        for child in kids.get(node["id"], []):
            if child["id"] not in shown:
                walk(child, depth + 1)
    for root in roots:
        walk(root, 0)
    # Parents that loop (only a damaged recording can say so) must not hide namespaces.
    for n in spaces:
        if n["id"] not in shown:
            walk(n, 0)
    return rows
