"""`nsgraph trace`: stream namespace events, like a bcc tool."""

from __future__ import annotations

import argparse
import contextlib
import errno as errno_module
import os
import signal
import sys
import time
import traceback
from datetime import datetime
from typing import Callable, Optional

from . import argcheck
from ..containers.records import MIN_ID_PREFIX, matches_container
from ..events.encode import EventEncoder
from ..events.event import Event
from ..events.kinds import EventKind
from ..containers.housekeeping import of_event as housekeeping_of
from ..exitcodes import EXIT_FAILURE, EXIT_NO_PRIVILEGES, EXIT_OK, EXIT_USAGE
from ..nstypes import MEMBER_TYPES, NS_SLOTS, SLOT_TYPE, parse_type_list
from ..text import printable

EXAMPLES = """\
examples:
  nsgraph trace                      # namespace events: clone/clone3 with CLONE_NEW*, unshare, setns
  nsgraph trace --json               # the same as JSON Lines, one object per event
  nsgraph trace --type net,pid       # only events about network or PID namespaces
  nsgraph trace --comm 'runc:[1:CHILD]'  # what runc does during `docker exec`
  nsgraph trace --pid 1234           # events of process 1234 (or clones that created it)
  nsgraph trace --container myapp    # only what happens in container myapp (or an id prefix)
  nsgraph trace --procs              # also every fork, exec and exit
  nsgraph trace --housekeeping       # also dockerd's/containerd's own setns (hidden by default)
  nsgraph trace --duration 10 --json > events.jsonl

columns: TIME (local), PID (host view), COMM, CONTAINER (as `docker ps` names it;
"-" on the host), EVENT, NS (namespace types the event is about), DETAILS (e.g. "joined net:[4026532184]", "new uts:[4026532253]", an errno).
exit status: %d after Ctrl-C/SIGTERM/--duration, %d on failure, %d on bad usage,
%d without the privileges to load eBPF (root, or CAP_BPF+CAP_PERFMON).
""" % (EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_NO_PRIVILEGES)

# 65 536 pages of 4 KiB: a 256 MiB ring buffer (locked kernel memory), plenty for any storm.
MAX_BUFFER_PAGES = 65536

NS_WIDTH = 18
COLUMNS = "%-15s %-7s %-16s %-14s %-8s %-" + str(NS_WIDTH) + "s %s"


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "trace", help="stream namespace events (clone/unshare/setns; --procs adds fork/exec/exit)",
        description="Stream namespace events from the kernel (eBPF tracepoints).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print JSON Lines instead of columns")
    parser.add_argument("--type", action="append", metavar="TYPES",
                        help="only events about these namespace types (comma-separated, repeatable): "
                             + ",".join(MEMBER_TYPES))
    parser.add_argument("--pid", type=int, action="append", metavar="PID",
                        help="only events of this process (host pid), or clones that created it; repeatable")
    parser.add_argument("--comm", action="append", metavar="COMM",
                        help="only events of tasks with this command name; repeatable")
    parser.add_argument("--container", action="append", metavar="NAME",
                        help="only events of processes in this container (its name, or an id prefix of "
                             "%d+ characters); repeatable" % MIN_ID_PREFIX)
    parser.add_argument("--procs", action="store_true",
                        help="also show every fork, exec and exit (hidden by default)")
    parser.add_argument("--housekeeping", action="store_true",
                        help="also show the container engines' own setns calls (dockerd entering each new "
                             "container's net namespace and back; hidden by default)")
    parser.add_argument("--failed", action="store_true", help="only calls that failed")
    parser.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")
    parser.add_argument("--buffer-pages", type=int, default=None, metavar="N",
                        help="ring buffer size in pages (power of two; default 2048)")
    parser.set_defaults(func=run)
    return parser


def parse_types(values) -> Optional[set]:
    """--type values (repeats and comma lists); None when no filter was asked for."""
    return parse_type_list(values, allowed=NS_SLOTS) or None


def make_filter(types: Optional[set], pids: Optional[list], comms: Optional[list],
                procs: bool, failed_only: bool) -> Callable[[Event], bool]:
    pid_set = set(pids or [])
    comm_set = set(comms or [])

    def keep(event: Event) -> bool:
        if not procs and not event.is_namespace_event:
            return False
        if failed_only and not event.failed:
            return False
        if pid_set and event.pid not in pid_set and event.child_pid not in pid_set:
            return False
        if comm_set and event.comm not in comm_set:
            return False
        if types is not None:
            event_types = set(event.ns_types())
            if not event_types & types:
                return False
        return True

    return keep


def _ns_text(event: Event, types) -> str:
    return " ".join("%s:[%d]" % (t, event.ns[t]) for t in types if t in event.ns)


def details(event: Event) -> str:
    if event.failed:
        code = event.errno
        return "failed: %s (%s)" % (errno_module.errorcode.get(code, str(code)), os.strerror(code))
    if event.kind == EventKind.UNSHARE:
        changed = event.changed_types()
        return ("new " + _ns_text(event, changed)) if changed else "no new namespace"
    if event.kind == EventKind.SETNS:
        changed = event.changed_types()
        if changed:
            return "joined " + _ns_text(event, changed) + (" (housekeeping)" if housekeeping_of(event) else "")
        asked = event.flag_ns_types()
        return "already in " + _ns_text(event, asked) if asked else "no change"
    if event.kind == EventKind.CLONE:
        changed = event.changed_types()
        text = "child %s" % event.child_pid
        if changed:
            text += ": new " + _ns_text(event, changed)
        return text
    if event.kind == EventKind.EXEC:
        if event.args:
            return "%s: %s" % (event.filename or "", " ".join(event.args))
        return event.filename or ""
    if event.kind == EventKind.EXIT:
        code = event.exit_code or 0
        if code & 0x7F:
            return "killed by signal %d" % (code & 0x7F)
        return "exit code %d" % (code >> 8)
    return ""


def format_columns(event: Event) -> str:
    when = datetime.fromtimestamp(event.ts).strftime("%H:%M:%S.%f")
    where = event.container or (">" + event.target_container if event.target_container else "-")
    return COLUMNS % (when, event.pid, printable(event.comm), _short(where, 14), event.kind,
                      _fit_list(_ns_types(event), NS_WIDTH), printable(details(event)))



@contextlib.contextmanager
def signals_held():
    """SIGINT and SIGTERM wait while output is written: CPython's buffered writer loses the
    rest of a write that a signal interrupts after a partial write to a full pipe (a
    reader that reads only after Ctrl-C lost every line between the first 64 KiB and the
    end of that write, and got one line cut in two).  The handlers only note the signal."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)

def _ns_types(event: Event) -> list:
    """The NS column: the namespace types the event is about (a *_for_children slot counts
    as its type: DETAILS names the slot); "any" for setns(fd, 0), none for none."""
    types = list(dict.fromkeys(SLOT_TYPE[t] for t in event.ns_types()))
    if not types and event.kind == EventKind.SETNS and event.raw_flags == 0:
        return ["any"]
    return types


def _fit_list(items: list, width: int) -> str:
    """"mnt,pid,net,uts,ipc,cgroup" in 18 columns: "mnt,pid,net,uts+2"; DETAILS has them all."""
    if not items:
        return "-"
    text = ",".join(items)
    for shown in range(len(items), 0, -1):
        text = ",".join(items[:shown]) + ("" if shown == len(items) else "+%d" % (len(items) - shown))
        if len(text) <= width:
            return text
    return text[:width]


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "~"


def header() -> str:
    return COLUMNS % ("TIME", "PID", "COMM", "CONTAINER", "EVENT", "NS", "DETAILS")


def run(args) -> int:
    from ..kernel.probes import ProbeError, ProbeOptions, PrivilegeError, missing_privileges

    problem = argcheck.first_problem(args, (
        ("type", "--type", argcheck.name_list),
        ("duration", "--duration", argcheck.seconds),
        ("buffer_pages", "--buffer-pages", argcheck.pages(1, MAX_BUFFER_PAGES)),
        ("pid", "--pid", argcheck.each(argcheck.pid)),
        ("comm", "--comm", argcheck.each(argcheck.comm)),
        ("container", "--container", argcheck.each(argcheck.not_empty))))
    if problem:
        print("nsgraph trace: %s" % problem, file=sys.stderr)
        return EXIT_USAGE
    try:
        types = parse_types(args.type)
    except ValueError as exc:
        print("nsgraph trace: %s" % exc, file=sys.stderr)
        return EXIT_USAGE
    problem = missing_privileges()
    if problem:
        print("nsgraph trace: %s" % problem, file=sys.stderr)
        return EXIT_NO_PRIVILEGES

    from ..kernel.collector import Collector

    options = ProbeOptions(proc_events=args.procs or bool(args.container))
    if args.buffer_pages:
        options.ringbuf_pages = args.buffer_pages
        options.perf_pages = args.buffer_pages
    keep = make_filter(types, args.pid, args.comm, args.procs, args.failed)
    from ..containers.attribution import CgroupIds, EventContainers
    from ..containers.engines import open_catalogs
    # Names come from Docker (and podman) when they answer; without, cgroup paths still give ids.
    wanted = args.container
    # With --container, wait for the engine's first answer: the names are checked below.
    # Else the engines are asked once the probes are loaded: their first answers (a `podman`
    # command, the Docker SDK's import) would otherwise share the CPU with the compiler, and
    # no event is read before then anyway.
    catalog = open_catalogs()
    if wanted:
        catalog.start(wait=15.0)
    cgroup_ids = CgroupIds()
    tagger = EventContainers(catalog, cgroup_ids=cgroup_ids)
    targets = None
    if wanted:
        from ..containers.attribution import TargetContainers
        targets = TargetContainers(catalog, wanted)
        if not catalog.any_connected():
            print("nsgraph trace: cannot check --container %s: %s; matching by id prefix only" % (
                ", ".join(wanted), catalog.status), file=sys.stderr)
        else:
            for name in targets.unmatched():
                print("nsgraph trace: no container matches --container %s (see `docker ps -a`, `podman ps -a`); "
                      "its events show once it exists" % name, file=sys.stderr)

    out = sys.stdout
    shown, hidden, failed = [0], [0], [0]
    render = EventEncoder().encode if args.json else format_columns

    def line_of(event: Event) -> Optional[str]:
        container = tagger.tag(event)
        if wanted and not matches_container(container, wanted):
            # A setns into a wanted container's namespaces (docker exec) belongs to it.
            if event.kind != "setns" or event.failed:
                return None
            event.target_container = targets.target_of(event)
            if event.target_container is None:
                return None
        if not keep(event):
            return None
        if not args.housekeeping and housekeeping_of(event):
            hidden[0] += 1
            return None
        shown[0] += 1
        return render(event)

    def on_batch(events: list) -> None:
        # A poll's events in one loop and one write: at hundreds of thousands of events a
        # second a call and a write per event were a third of the work.
        lines = []
        for event in events:
            try:
                line = line_of(event)
            except Exception:       # a bug, not bad input: say so once, count, keep going
                failed[0] += 1
                if failed[0] == 1:
                    traceback.print_exc()
                continue
            if line is not None:
                lines.append(line)
        if lines:
            lines.append("")
            with signals_held():
                out.write("\n".join(lines))

    collector = Collector(options=options)
    collector.subscribe_batch(on_batch)
    try:
        collector.load()
        cgroup_ids.kernel_lookup = collector.probes.cgroup_path
        if not wanted:
            catalog.start(wait=0)
    except PrivilegeError as exc:
        print("nsgraph trace: %s" % exc, file=sys.stderr)
        return EXIT_NO_PRIVILEGES
    except ProbeError as exc:
        print("nsgraph trace: %s" % exc, file=sys.stderr)
        return EXIT_FAILURE

    stopping = []

    def on_signal(signum, _frame):
        stopping.append(signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    if not args.json:
        out.write(header() + "\n")
        out.flush()
    print("Tracing namespace events... Hit Ctrl-C to end.", file=sys.stderr, flush=True)
    deadline = time.monotonic() + args.duration if args.duration is not None else None
    try:
        while not stopping:
            if deadline is not None and time.monotonic() >= deadline:
                break
            collector.poll_once()
            with signals_held():
                out.flush()
        collector.drain(quiet_ms=50, limit_s=1.0)
        with signals_held():
            out.flush()
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
    finally:
        stats = collector.stats()
        collector.stop()
        catalog.close(timeout=1)
    lost = stats["lost"]
    summary = "%d events seen, %d shown, %d lost" % (stats["events"], shown[0], lost)
    if stats["rejected"]:
        summary += ", %d malformed records skipped" % stats["rejected"]
    if failed[0]:
        summary += ", %d events not shown (an nsgraph bug: see the first traceback above)" % failed[0]
    if hidden[0]:
        summary += ", %d container-engine housekeeping calls hidden (--housekeeping shows them)" % hidden[0]
    if lost:
        summary += " (ring buffer full %d, syscall entries not remembered %d, perf lost %d: "\
                   "try --buffer-pages %d)" % (
                       stats["lost_detail"].get("ringbuf_full", 0), stats["lost_detail"].get("pending_full", 0),
                       stats["lost_detail"].get("perf_lost", 0), (args.buffer_pages or 2048) * 4)
    print(summary, file=sys.stderr, flush=True)
    return EXIT_OK
