"""`nsgraph inspect`: what a namespace contains, as a process inside sees it; side by side with --compare.

Reads the namespace's own instance of the kernel's bookkeeping (hostname,
interfaces, processes, mounts, IPC objects, id maps, cgroup root, clock
offsets) without running anything inside it: through its members' /proc files
and a short-lived helper process that joins it (tracer/host/inside/).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

from ..exitcodes import EXIT_FAILURE, EXIT_NO_PRIVILEGES, EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE
from ..nstypes import DISPLAY_ORDER
from ..text import printable

EXAMPLES = """\
examples:
  nsgraph inspect --host --type uts,net          # the host's hostname and interfaces
  nsgraph inspect net:4026532334                 # one namespace, by TYPE:INODE (as lsns shows)
  nsgraph inspect net:4:4026532334:0 --json      # by the dashboard's id; JSON Lines
  nsgraph inspect --container myapp              # all eight types of a Docker container
  nsgraph inspect --compare --host --container myapp --type uts,net,pid
                                                 # `hostname; ip addr; ps aux` answered for
                                                 # the host and the container, side by side
  nsgraph inspect --compare uts:4026531838 uts:4026532310

Namespaces are named by the graph's id (TYPE:DEV:INODE:GEN), by TYPE:INODE or
TYPE:[INODE], or by --host / --pid PID / --container NAME with --type (default: all
eight types: user pid mnt net uts ipc cgroup time).  Nothing runs inside the
namespace: its members' /proc files are read, and a helper process that joins
it reads what only a process inside can see (hostname, IPC objects, addresses).
With --compare every type is shown with one column per target; rows that
differ start with '*'.  --json prints one object per namespace (JSON Lines),
or one per type with --compare.

exit status: 0 every namespace was read; 1 a read failed; 2 bad usage;
3 a namespace, process or container does not exist (any more) or ended while
it was read; 77 not root.
"""


class _AddTarget(argparse.Action):
    """--pid and --container keep their command-line order (the column order)."""

    def __call__(self, parser, namespace, values, option_string=None):
        targets = list(getattr(namespace, "targets", None) or [])
        targets.append((self.dest, values))
        namespace.targets = targets


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "inspect", help="what a namespace contains, as a process inside sees it (--compare: side by side)",
        description="Show a namespace's own instance of the kernel's bookkeeping: hostname (uts), "
                    "interfaces (net), processes (pid), mounts (mnt), IPC objects (ipc), id maps (user), "
                    "cgroup root (cgroup), clock offsets (time). Read-only; needs root.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("namespaces", nargs="*", metavar="NAMESPACE",
                        help="TYPE:DEV:INODE:GEN, TYPE:INODE or TYPE:[INODE]")
    parser.add_argument("--host", action=_AddTarget, dest="host", nargs=0,
                        help="the host's namespaces (those of pid 1, or of kthreadd when pid 1 is unreadable)")
    parser.add_argument("--pid", type=int, action=_AddTarget, dest="pid", metavar="PID",
                        help="the namespaces of this process (repeatable)")
    parser.add_argument("--container", action=_AddTarget, dest="container", metavar="NAME",
                        help="the namespaces of this container's init process (repeatable)")
    parser.add_argument("--type", metavar="TYPES",
                        help="comma-separated types for --pid/--container (default: all eight)")
    parser.add_argument("--compare", action="store_true", help="side by side, one column per namespace")
    parser.add_argument("--json", action="store_true", help="JSON Lines")
    parser.add_argument("--lines", type=int, default=25, metavar="N",
                        help="with --compare: at most N lines per cell (0: all; --json has everything)")
    parser.add_argument("--no-docker", action="store_true",
                        help="do not ask the Docker engine (container names from cgroup paths only)")
    parser.set_defaults(func=run, targets=[])
    return parser


class UsageError(Exception):
    pass


class NotFound(Exception):
    pass


def _types(args) -> list:
    if not args.type:
        return list(DISPLAY_ORDER)
    wanted = [t.strip() for t in args.type.split(",") if t.strip()]
    unknown = [t for t in wanted if t not in DISPLAY_ORDER]
    if unknown or not wanted:
        raise UsageError("unknown --type %s (choose from %s)" % (",".join(unknown) or "''", " ".join(DISPLAY_ORDER)))
    return list(dict.fromkeys(wanted))       # the order asked for, once each


def _container_pid(graph_json: dict, name: str):
    for c in graph_json.get("containers", []):
        cid = c.get("id") or ""
        if c.get("name") == name or (len(name) >= 4 and cid.startswith(name)):
            return c.get("pid"), c.get("name") or name
    return None, name


def resolve_targets(graph, args) -> list:
    """[(type, NsTarget)] in command-line order; NotFound/UsageError for names that do not resolve."""
    from ..host.inside import resolve
    hosts = resolve.host_ids(graph)
    out = []
    for ref in args.namespaces:
        try:
            detail = resolve.lookup(graph, ref)
        except resolve.BadRef as exc:
            raise UsageError(str(exc))
        if detail is None:
            raise NotFound("no namespace %s on this machine now (nsgraph snapshot lists them)" % ref)
        out.append((detail["type"], resolve.target_from(detail, hosts), detail.get("alive", True)))
    types = _types(args)
    graph_json = None
    for kind, value in args.targets:
        if kind == "host":
            out.extend(_host_targets(graph, hosts, types))
            continue
        if kind == "container":
            if graph_json is None:
                graph_json = graph.to_json(include_ended=False, include_processes=False)
            pid, name = _container_pid(graph_json, value)
            if not pid:
                raise NotFound("no running container %r (docker ps lists them; without Docker, use --pid)" % value)
            shown = "container %s" % name
        else:
            pid, shown = value, None
        proc = graph.process(pid)
        if proc is None:
            raise NotFound("no process %d (it may have exited)" % pid)
        shown = shown or "pid %d (%s)" % (pid, proc.get("comm", "?"))
        for t in types:
            detail = resolve.of_process(graph, pid, t)
            if detail is None:
                raise NotFound("process %d has no %s namespace (this kernel lacks it, or it exited)" % (pid, t))
            target = resolve.target_from(detail, hosts)
            target.pids = [pid] + [p for p in target.pids if p != pid]
            if shown and target.label != "host":
                target.label = shown
            out.append((t, target, detail.get("alive", True)))
    if not out:
        raise UsageError("name a namespace, or --pid PID / --container NAME (see nsgraph inspect --help)")
    return out


def _host_targets(graph, hosts: set, types: list) -> list:
    from ..host.inside import resolve
    by_type = {ident.split(":", 1)[0]: ident for ident in hosts if not ident.startswith(("pid_for", "time_for"))}
    out = []
    for t in types:
        detail = graph.namespace(by_type[t]) if t in by_type else None
        if detail is None:
            raise NotFound("the host's %s namespace is not readable here (pid 1 and 2 hide it)" % t)
        out.append((t, resolve.target_from(detail, hosts), True))
    return out


def run(args) -> int:
    try:
        _types(args)
        if os.geteuid() != 0:
            print("nsgraph inspect needs root: it reads other processes' namespaces and joins them "
                  "(sudo nsgraph inspect ...)", file=sys.stderr)
            return EXIT_NO_PRIVILEGES
        from .snapshot import build_graph
        try:
            graph, _snap = build_graph(docker=not args.no_docker)
        except OSError as exc:
            print("nsgraph inspect: cannot read /proc (%s); is /proc mounted?" % exc, file=sys.stderr)
            return EXIT_FAILURE
        targets = resolve_targets(graph, args)
    except UsageError as exc:
        print("nsgraph inspect: %s" % exc, file=sys.stderr)
        return EXIT_USAGE
    except NotFound as exc:
        print("nsgraph inspect: %s" % exc, file=sys.stderr)
        return EXIT_NOT_FOUND
    from ..host.inside.view import ENDED, answer, compare, inspect
    alive = [t for _ty, t, ok in targets if ok]
    views = {id(t): v for t, v in zip(alive, inspect(alive))}
    results = [views.get(id(target)) or answer(target, "ended", ENDED) for _ty, target, _ok in targets]
    if args.compare:
        order = list(dict.fromkeys(v["type"] for v in results))   # first named first
        for group in ([v for v in results if v["type"] == t] for t in order):
            table = compare(group)
            if args.json:
                table["views"] = group
                print(json.dumps(table, default=str))
            else:
                sys.stdout.write(render_compare(table, lines=args.lines))
    else:
        for view in results:
            print(json.dumps(view, default=str) if args.json else render_view(view), end="\n" if args.json else "")
    return _status(results)


def _status(results: list) -> int:
    errors = [r for r in results if r["state"] == "error"]
    for r in errors:
        print("nsgraph inspect: %s:[%s]: %s" % (r["type"], r["inode"], r["message"]), file=sys.stderr)
    if errors and os.geteuid() != 0 and any("needs root" in (r["message"] or "") for r in errors):
        return EXIT_NO_PRIVILEGES
    if errors:
        return EXIT_FAILURE
    if any(r["state"] == "ended" for r in results):
        return EXIT_NOT_FOUND
    return EXIT_OK


def _lines(value) -> list:
    return [printable(v) for v in value] if isinstance(value, list) else [printable(str(value))]


def _cut_lines(cell: list, limit: int) -> list:
    if limit <= 0 or len(cell) <= limit:
        return cell
    return cell[:limit - 1] + ["… (%d more)" % (len(cell) - limit + 1)]


def render_view(view: dict) -> str:
    """One namespace: a header line, then `label  value` rows (lists indented below their label)."""
    head = "%s:[%s]  %s" % (view["type"], view["inode"], printable(view.get("label") or ""))
    if view["state"] != "ok":
        return "%s\n  %s: %s\n\n" % (head, view["state"], printable(view.get("message") or ""))
    head += "  (read through %s, %s, %.0f ms)" % (view.get("read_via"), view.get("method"), view.get("elapsed_ms") or 0)
    rows = view.get("fields") or []
    width = max([len(label) for label, value in rows if not isinstance(value, list)] + [8])
    out = [head]
    for label, value in rows:
        if isinstance(value, list):
            out.append("  " + printable(label))
            out.extend("      " + line for line in _lines(value))
        else:
            out.append("  %-*s  %s" % (width, printable(label), printable(str(value))))
    return "\n".join(out) + "\n\n"


def render_compare(table: dict, width: int = 0, lines: int = 0) -> str:
    """One type, one column per namespace; multi-line values side by side, rows that differ marked '*'.

    lines > 0 cuts every cell to that many lines (saying how many more there are)."""
    columns = table["columns"]
    width = width or shutil.get_terminal_size((160, 24)).columns
    rows = [(r["label"], r["values"], r["same"]) for r in table["rows"]]
    label_w = max([len(label) for label, _v, _s in rows] + [len(table["type"]) + 6])
    col_w = max(12, min(60, (width - label_w - 4) // max(1, len(columns)) - 2))

    def cut(text: str) -> str:
        return text if len(text) <= col_w else text[:col_w - 1] + "…"

    def line(label, cells, mark=" "):
        return ("%s %-*s  " % (mark, label_w, label) + "  ".join(
            "%-*s" % (col_w, cut(c)) for c in cells)).rstrip()

    out = [line("== %s ==" % table["type"], [printable(c.get("label") or "") for c in columns]),
           line("", ["%s:[%s]" % (c["type"], c["inode"]) for c in columns])]
    if any(c["state"] != "ok" for c in columns):
        out.append(line("state", [c["state"] + (": " + c["message"] if c.get("message") else "")
                                  for c in columns]))
    for label, values, same in rows:
        cells = [_cut_lines(_lines(v), lines) if v is not None else ["–"] for v in values]
        for i in range(max(len(c) for c in cells)):
            out.append(line(printable(label) if i == 0 else "", [c[i] if i < len(c) else "" for c in cells],
                            "*" if i == 0 and not same else " "))
    return "\n".join(out) + "\n\n"
