"""`nsgraph trace`'s output and filters (tracer/commands/trace.py), on real recorded events.

The events are what the tracer really printed: tests/data/joins_recorded.json holds
`nsgraph trace --json --procs` output of `docker exec`, nsenter and failing setns
callers, with ground truth from /proc, `docker inspect` and the callers' own return
values; tests/data/recorded_events.json holds raw probe records of the namespace
workload.  The root test (tests/kernel/test_cli_trace.py) runs the command itself.
"""

from __future__ import annotations

import errno
import json
import os
import re
from datetime import datetime

import pytest

from tracer import nstypes
from tracer.commands import trace
from tracer.events.decode import Decoder
from tracer.events.event import Event
from tracer.events.kinds import EventKind
from tracer.text import printable

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")
COLUMNS = ["TIME", "PID", "COMM", "CONTAINER", "EVENT", "NS", "DETAILS"]


def joins_recording():
    with open(os.path.join(DATA, "joins_recorded.json")) as f:
        return json.load(f)


def scenario_events(name):
    return [Event.from_json(obj) for obj in joins_recording()["scenarios"][name]["events"]]


def workload_events():
    with open(os.path.join(DATA, "recorded_events.json")) as f:
        recording = json.load(f)
    decoder = Decoder(node="test", clock_offset=0.0)
    events = [decoder.decode(bytes.fromhex(h)) for h in recording["records"]]
    assert decoder.rejected == 0
    return recording["truth"], events


def columns(line):
    """The seven columns of a row: the first six have no spaces, DETAILS is the rest."""
    parts = line.split(None, 6)
    assert len(parts) == 7, line
    return dict(zip(COLUMNS, parts))


def exec_event(**fields):
    base = dict(kind=EventKind.EXEC, seq=1, ts=1_700_000_000.25, pid=4242, tid=4242, ppid=1, uid=0, vpid=4242,
                comm="true", filename="/bin/true", args=["/bin/true"])
    base.update(fields)
    return Event(**base)


# -- DETAILS --

def test_unshare_details_name_the_new_namespaces_by_their_inode():
    truth, events = workload_events()
    main_pid = truth[0]["pid"]
    unshares = [e for e in events if e.kind == EventKind.UNSHARE and e.pid == main_pid]
    expected = [t for t in truth if t["op"] == "unshare"]
    assert len(unshares) == len(expected) >= 2
    for event, t in zip(unshares, expected, strict=True):
        changed = [s for s in nstypes.NS_SLOTS if t["after"].get(s) != t["before"].get(s)]
        assert trace.details(event) == "new " + " ".join("%s:[%d]" % (s, t["after"][s]) for s in changed)


def test_clone_details_name_the_child_and_its_new_namespaces():
    truth, events = workload_events()
    for op in ("clone", "clone3"):
        t = next(t for t in truth if t["op"] == op)
        event = next(e for e in events if e.kind == EventKind.CLONE and e.child_pid == t["child_pid"])
        text = trace.details(event)
        assert text.startswith("child %d: new " % t["child_pid"]), text
        for slot in event.changed_types():
            assert "%s:[%d]" % (slot, t["child_ns"][slot]) in text
    # a plain fork (runc's CLONE_PARENT) names the child and nothing else
    fork = next(e for e in scenario_events("docker_exec") if e.kind == EventKind.CLONE)
    assert trace.details(fork) == "child %d" % fork.child_pid


def test_failed_calls_show_the_errno_the_caller_got():
    recording = joins_recording()["scenarios"]["failing_setns"]
    setns = [e for e in scenario_events("failing_setns") if e.kind == EventKind.SETNS]
    # the callers' own return values, -errno on failure (ground truth)
    assert [e.ret if e.ret >= 0 else -e.errno for e in setns] == recording["results"]
    for event, result in zip(setns, recording["results"], strict=True):
        text = trace.details(event)
        if result < 0:
            code = -result
            assert text == "failed: %s (%s)" % (errno.errorcode[code], os.strerror(code))
        else:
            assert text.startswith("joined ")


def test_setns_details_say_joined_or_already_in():
    recording = joins_recording()
    container_ns = recording["container"]["ns"]          # /proc/<init>/ns/* of the container
    events = [e for e in scenario_events("docker_exec") if e.kind == EventKind.SETNS]
    joined = [trace.details(e) for e in events]
    for ns_type in ("ipc", "uts", "net", "mnt"):
        assert "joined %s:[%d]" % (ns_type, container_ns[ns_type]) in joined
    # setns(CLONE_NEWPID) changes the namespace of the caller's future children
    assert "joined pid_for_children:[%d]" % container_ns["pid"] in joined
    # nsenter -a also enters the cgroup and time namespaces the container shares with the host
    already = [trace.details(e) for e in scenario_events("nsenter_all")
               if e.kind == EventKind.SETNS and not e.changed_types()]
    assert sorted(already) == ["already in cgroup:[%d]" % container_ns["cgroup"],
                               "already in time:[%d]" % container_ns["time"]]


def test_unshare_and_setns_that_change_nothing():
    unshare0 = next(e for e in scenario_events("docker_exec") if e.kind == EventKind.UNSHARE)
    assert unshare0.raw_flags == 0 and trace.details(unshare0) == "no new namespace"
    setns_any = Event(kind=EventKind.SETNS, seq=1, ts=0.0, pid=1, tid=1, ppid=0, uid=0, vpid=1, comm="x",
                      syscall="setns", raw_flags=0, fd=3, ns={"net": 5}, ns_before={"net": 5})
    assert trace.details(setns_any) == "no change"


def test_exec_and_exit_details():
    events = scenario_events("nsenter_netns")
    ip_exec = next(e for e in events if e.kind == EventKind.EXEC and e.comm == "ip")
    assert trace.details(ip_exec) == "/usr/sbin/ip: ip -brief link"
    assert trace.details(exec_event(args=None)) == "/bin/true"
    assert trace.details(exec_event(filename=None, args=None)) == ""
    exit_ok = next(e for e in events if e.kind == EventKind.EXIT)
    assert exit_ok.exit_code == 0 and trace.details(exit_ok) == "exit code 0"
    # the kernel's wait status: exit code in bits 8-15, the killing signal in 0-6
    assert trace.details(exec_event(kind=EventKind.EXIT, exit_code=3 << 8)) == "exit code 3"
    assert trace.details(exec_event(kind=EventKind.EXIT, exit_code=9)) == "killed by signal 9"
    assert trace.details(exec_event(kind=EventKind.EXIT, exit_code=None)) == "exit code 0"


# -- columns --

def test_header_and_rows_line_up():
    header = trace.header()
    assert header.split() == COLUMNS
    for name in ("docker_exec", "failing_setns", "nsenter_all"):
        for event in scenario_events(name):
            row = columns(trace.format_columns(event))
            assert int(row["PID"]) == event.pid
            assert row["EVENT"] == event.kind
            assert row["DETAILS"] == printable(trace.details(event))
            assert row["TIME"] == datetime.fromtimestamp(event.ts).strftime("%H:%M:%S.%f")
            # each column starts where the header's does (NS overflows only with 5+ types)
            line = trace.format_columns(event)
            for title in COLUMNS[1:]:
                start = header.index(title)
                assert line[start - 1] == " " and line[start] != " ", (title, line)


def test_ns_column():
    events = scenario_events("docker_exec")
    setns_pid = next(e for e in events if e.kind == EventKind.SETNS and e.flags == ["CLONE_NEWPID"])
    assert setns_pid.ns_types() == ["pid", "pid_for_children"]
    assert columns(trace.format_columns(setns_pid))["NS"] == "pid"
    unshare0 = next(e for e in events if e.kind == EventKind.UNSHARE)
    assert columns(trace.format_columns(unshare0))["NS"] == "-"
    # setns(fd, 0) with a failure: no type asked for and none changed
    ebadf = next(e for e in scenario_events("failing_setns") if e.kind == EventKind.SETNS and e.errno == 9)
    assert ebadf.raw_flags == 0 and columns(trace.format_columns(ebadf))["NS"] == "any"


def test_container_and_comm_columns_are_one_printable_word():
    assert columns(trace.format_columns(exec_event()))["CONTAINER"] == "-"
    row = columns(trace.format_columns(exec_event(container="a-container-name-longer-than-14")))
    assert row["CONTAINER"] == "a-container-n~" and len(row["CONTAINER"]) == 14
    assert columns(trace.format_columns(exec_event(container="myapp")))["CONTAINER"] == "myapp"
    # comm and argv come from the traced program: a newline or an escape must not break the line
    line = trace.format_columns(exec_event(comm="evil\nname", args=["x", "\x1b[2Jboo"]))
    assert "\n" not in line and "\x1b" not in line
    assert "evil\\nname" in line and "\\x1b[2Jboo" in line


# -- filters --

def test_parse_types():
    assert trace.parse_types(None) is None and trace.parse_types("") is None
    assert trace.parse_types("net, pid,") == {"net", "pid"}
    assert trace.parse_types("pid_for_children") == {"pid_for_children"}
    with pytest.raises(ValueError, match=r"unknown namespace type bogus, nett \(known: mnt, pid, net"):
        trace.parse_types("net,nett,bogus")


def test_default_filter_shows_namespace_events_only():
    keep = trace.make_filter(None, None, None, procs=False, failed_only=False)
    events = scenario_events("docker_exec")
    shown = [e for e in events if keep(e)]
    assert {e.kind for e in shown} == {EventKind.SETNS, EventKind.UNSHARE}
    assert [e for e in events if e not in shown and e.is_namespace_event] == []
    keep_all = trace.make_filter(None, None, None, procs=True, failed_only=False)
    assert [e for e in events if keep_all(e)] == events


def test_pid_comm_type_and_failed_filters():
    events = scenario_events("docker_exec")
    fork = next(e for e in events if e.kind == EventKind.CLONE)
    child = fork.child_pid
    by_pid = trace.make_filter(None, [child], None, procs=True, failed_only=False)
    # the child's own events, and the clone that created it
    assert {e.pid for e in events if by_pid(e)} == {fork.pid, child}
    assert all(e.pid == child or e.child_pid == child for e in events if by_pid(e))
    by_comm = trace.make_filter(None, None, ["ps"], procs=True, failed_only=False)
    assert [(e.kind, e.comm) for e in events if by_comm(e)] == [("exec", "ps"), ("exit", "ps")]
    by_type = trace.make_filter({"net", "uts"}, None, None, procs=False, failed_only=False)
    assert [e.flags for e in events if by_type(e)] == [["CLONE_NEWUTS"], ["CLONE_NEWNET"]]
    failing = scenario_events("failing_setns")
    failed = trace.make_filter(None, None, None, procs=False, failed_only=True)
    assert [e.errno for e in failing if failed(e)] == [1, 9, 22]
    # filters combine: failed setns calls about net only
    both = trace.make_filter({"net"}, None, None, procs=False, failed_only=True)
    assert [e.errno for e in failing if both(e)] == [22]


def test_every_printed_row_of_a_recording_is_one_line():
    pattern = re.compile(r"^\d\d:\d\d:\d\d\.\d{6} ")
    for name in joins_recording()["scenarios"]:
        for event in scenario_events(name):
            line = trace.format_columns(event)
            assert "\n" not in line and pattern.match(line), line
