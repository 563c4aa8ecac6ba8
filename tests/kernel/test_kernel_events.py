"""The probes against the real kernel: a known workload, compared with what the
processes themselves read from /proc/self/ns/* right after each call."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tracer import nstypes
from tracer.events import flags
from tracer.kernel import abi


WORKLOAD = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "workloads", "ns_workload.py")
UNSHARE_COUNT = 23  # prime, so an off-by-a-multiple loss cannot hide


def run_workload(live_events):
    mark = live_events.mark()
    proc = subprocess.run([sys.executable, WORKLOAD, "--unshare-count", str(UNSHARE_COUNT)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    truth = [json.loads(line) for line in proc.stdout.splitlines()]
    events = live_events.since(mark)
    return truth, events


@pytest.fixture(scope="module")
def workload(live_events):
    truth, events = run_workload(live_events)
    pids = {t["pid"] for t in truth if "pid" in t} | {t["child_pid"] for t in truth if t.get("child_pid")}
    ns_events = [e for e in events if e.pid in pids and e.is_namespace_event]
    return truth, events, ns_events, live_events.collector.stats()


def same_changes(event, truth_before: dict, truth_after: dict, truth_after_ids=None):
    """The event names exactly the slots /proc shows changed, with /proc's inodes before
    and after (and NS_GET_ID's ids where the kernel has them)."""
    changed = [t for t in truth_after if truth_before.get(t) != truth_after[t]]
    assert dict(event.ns) == {t: truth_after[t] for t in changed}
    assert dict(event.ns_before) == {t: truth_before[t] for t in changed if t in truth_before}
    assert event.changed_types() == [t for t in abi.NS_SLOTS if t in changed]
    if truth_after_ids:
        assert {t: event.ns_id[t] for t in changed} == {t: truth_after_ids[t] for t in changed}


def test_no_event_lost_or_rejected(workload):
    _truth, events, _ns_events, stats = workload
    assert events, "no events at all reached user space"
    assert stats["lost"] == 0, stats["lost_detail"]
    assert stats["rejected"] == 0, stats["rejected_detail"]


def test_unshare_events_match_proc(workload):
    truth, _events, ns_events, _stats = workload
    main_pid = truth[0]["pid"]
    expected = [t for t in truth if t["op"] == "unshare"]
    assert len(expected) == UNSHARE_COUNT + 1
    got = [e for e in ns_events if e.kind == "unshare" and e.pid == main_pid]
    assert len(got) == len(expected), [(e.kind, e.flags) for e in got]
    for event, t in zip(got, expected):
        assert event.raw_flags == t["flags"]
        assert event.tid == t["tid"]
        assert event.ret == 0 and event.errno is None
        assert event.syscall == "unshare"
        same_changes(event, t["before"], t["after"], t["after_ids"])
    assert got[-1].flags == ["CLONE_NEWIPC", "CLONE_NEWNET"]
    assert got[-1].ns_types() == ["net", "ipc"]


def test_recycled_inodes_have_distinct_ids(workload):
    """The kernel reuses uts inodes at once; the 64-bit ids must still differ."""
    truth, _events, ns_events, _stats = workload
    uts = [t for t in truth if t["op"] == "unshare" and t["flags"] == nstypes.CLONE_NEWUTS]
    main_pid = truth[0]["pid"]
    events = [e for e in ns_events if e.kind == "unshare" and e.pid == main_pid and e.raw_flags == nstypes.CLONE_NEWUTS]
    assert len(events) == UNSHARE_COUNT
    if not uts[0]["after_ids"]:
        # Before Linux 6.18 the inode is all there is (and it is reused): the events must
        # not invent ids (the graph tells the namespaces apart by generation instead).
        assert all(not e.ns_id for e in events)
        return
    ids = [t["after_ids"]["uts"] for t in uts]
    assert len(set(ids)) == UNSHARE_COUNT
    assert [e.ns_id["uts"] for e in events] == ids


def test_clone_with_new_namespaces(workload):
    truth, _events, ns_events, _stats = workload
    t = next(t for t in truth if t["op"] == "clone")
    got = [e for e in ns_events if e.kind == "clone" and e.child_pid == t["child_pid"]]
    assert len(got) == 1
    event = got[0]
    assert event.pid == t["pid"]
    assert event.syscall == "clone"
    assert event.raw_flags & ~flags.CSIGNAL == t["flags"]
    assert set(event.flags) >= {"CLONE_NEWPID", "CLONE_NEWUTS", "CLONE_NEWNS"}
    assert event.ret == t["ret"]
    assert event.child_vpid == t["child_vpid"] == 1
    same_changes(event, t["parent_ns"], t["child_ns"], t["child_ns_ids"])
    assert {"pid", "uts", "mnt"} <= set(event.changed_types())


def test_clone3_reads_flags_from_user_struct(workload):
    truth, _events, ns_events, _stats = workload
    t = next(t for t in truth if t["op"] == "clone3")
    got = [e for e in ns_events if e.kind == "clone" and e.child_pid == t["child_pid"]]
    assert len(got) == 1
    event = got[0]
    assert event.syscall == "clone3"
    assert event.raw_flags == t["flags"] == nstypes.CLONE_NEWNET
    assert event.ret == t["ret"]
    same_changes(event, t["parent_ns"], t["child_ns"])
    assert event.changed_types() == ["net"]


def test_clone_of_a_user_namespace_alone(workload):
    """CLONE_NEWUSER alone leaves the child its parent's nsproxy: the fork probe sees the
    clone through the child's credentials, and names the call from the parent's registers."""
    truth, _events, ns_events, _stats = workload
    t = next(t for t in truth if t["op"] == "clone_user")
    assert t["errno"] is None
    got = [e for e in ns_events if e.kind == "clone" and e.child_pid == t["child_pid"]]
    assert len(got) == 1
    event = got[0]
    assert event.syscall == "clone" and event.flags == ["CLONE_NEWUSER"]
    assert event.ret == t["ret"]
    same_changes(event, t["parent_ns"], t["child_ns"])
    assert event.changed_types() == ["user"]


def test_a_failed_clone_has_no_record(workload):
    """A clone refused before copy_process() made nothing: no record (the syscall probes
    that used to report it are gone; sched_process_fork never runs for it)."""
    truth, events, _ns_events, _stats = workload
    t = next(t for t in truth if t["op"] == "clone_failed")
    assert t["errno"] == 22
    failed = [e for e in events if e.kind == "clone" and e.pid == t["pid"] and e.failed]
    assert failed == [], failed


def test_setns_into_another_process(workload):
    truth, _events, ns_events, _stats = workload
    holder = next(t for t in truth if t["op"] == "unshare_holder")
    t = next(t for t in truth if t["op"] == "setns")
    got = [e for e in ns_events if e.kind == "setns" and e.pid == t["pid"]]
    assert len(got) == 1
    event = got[0]
    assert event.fd == t["fd"]
    assert event.raw_flags == nstypes.CLONE_NEWNET and event.flags == ["CLONE_NEWNET"]
    assert event.ret == 0
    same_changes(event, t["before"], t["after"])
    assert event.ns["net"] == t["target_net"] == holder["after"]["net"]
    assert event.changed_types() == ["net"]
    # The target's own unshare was traced too.
    got_holder = [e for e in ns_events if e.kind == "unshare" and e.pid == holder["pid"]]
    assert len(got_holder) == 1
    same_changes(got_holder[0], holder["before"], holder["after"])


def test_unprivileged_unshare_fails_with_eperm(workload):
    truth, _events, ns_events, _stats = workload
    t = next(t for t in truth if t["op"] == "unshare_eperm")
    assert t["errno"] == 1
    got = [e for e in ns_events if e.pid == t["pid"]]
    assert len(got) == 1
    event = got[0]
    assert event.kind == "unshare"
    assert event.ret == -1 and event.errno == 1 and event.failed
    assert event.uid == t["uid"] == 65534
    assert t["before"] == t["after"]
    same_changes(event, t["before"], t["after"])
    assert dict(event.ns) == {} and event.changed_types() == []
    assert event.to_json()["errno"] == 1 and event.to_json()["errno_name"] == "EPERM"


def test_exactly_the_expected_namespace_events(workload):
    """No extra and no missing namespace events from the workload's processes."""
    truth, _events, ns_events, _stats = workload
    expected = sum(1 for t in truth if t["op"] in ("unshare", "clone", "clone3", "clone_user", "setns",
                                                     "unshare_holder", "unshare_eperm"))
    assert len(ns_events) == expected, [(e.kind, e.pid, e.flags) for e in ns_events]


def test_fork_exec_exit_follow_processes(live_events, tmp_path):
    mark = live_events.mark()
    proc = subprocess.run(["sh", "-c", "exec /bin/true"], timeout=10)
    assert proc.returncode == 0
    events = live_events.since(mark)
    me = os.getpid()
    forks = [e for e in events if e.kind == "clone" and e.pid == me]
    assert forks, "the fork of the shell was not seen"
    child = forks[-1].child_pid
    execs = [e for e in events if e.kind == "exec" and e.pid == child]
    assert [os.path.basename(e.filename) for e in execs] == ["sh", "true"]
    assert execs[-1].comm == "true"
    assert execs[0].args == ["sh", "-c", "exec /bin/true"]
    assert execs[1].args == ["/bin/true"]
    exits = [e for e in events if e.kind == "exit" and e.pid == child]
    assert len(exits) == 1 and exits[0].exit_code == 0
    # A plain fork changes no namespace: a brief record, with nothing to read.
    assert forks[-1].brief and dict(forks[-1].ns) == {} and forks[-1].uid is None
    assert exits[0].brief and exits[0].comm == "true"


def test_vpid_inside_a_pid_namespace(live_events):
    mark = live_events.mark()
    proc = subprocess.Popen(["unshare", "--pid", "--fork", "sh", "-c", "echo $$"], stdout=subprocess.PIPE,
                            text=True)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0 and out.strip() == "1"
    events = live_events.since(mark)
    host_pid_ns = int(os.readlink("/proc/self/ns/pid").split("[")[1][:-1])
    # unshare --pid made a pid_for_children namespace (the process we started is unshare) ...
    unshares = [e for e in events if e.kind == "unshare" and e.pid == proc.pid]
    assert len(unshares) == 1 and "CLONE_NEWPID" in unshares[0].flags
    new_pid_ns = unshares[0].ns["pid_for_children"]
    assert new_pid_ns != host_pid_ns
    # ... so its fork is sent in full: the child's pid namespace changed (a plain
    # fork would be a brief record, and exec records name no namespace).
    forks = [e for e in events if e.kind == "clone" and e.pid == proc.pid]
    assert len(forks) == 1 and not forks[0].brief
    assert forks[0].ns["pid"] == new_pid_ns and forks[0].ns_before["pid"] == host_pid_ns
    execs = [e for e in events if e.kind == "exec" and e.pid == forks[0].child_pid]
    assert [os.path.basename(e.filename) for e in execs] == ["sh"]
    assert execs[0].vpid == 1 and execs[0].pid != 1


def test_exec_arguments_are_captured_and_cut_visibly(live_events):
    long_arg = "x" * 300
    mark = live_events.mark()
    subprocess.run(["/bin/echo", "short", long_arg], stdout=subprocess.DEVNULL, timeout=10, check=True)
    events = live_events.since(mark)
    execs = [e for e in events if e.kind == "exec" and e.filename == "/bin/echo"]
    assert len(execs) == 1
    args = execs[0].args
    assert args[:2] == ["/bin/echo", "short"]
    assert args[2].endswith("...") and set(args[2][:-3]) == {"x"}
    assert len("\0".join(args)) - 3 == abi.ARGS_LEN


def test_ns_ids_only_where_the_kernel_has_them(workload):
    """On kernels without ns_common.ns_id (before 6.18) events carry no ids at all,
    never zeros or guesses; where the kernel has them they equal NS_GET_ID's."""
    truth, _events, ns_events, _stats = workload
    main_pid = truth[0]["pid"]
    unshares = [e for e in ns_events if e.kind == "unshare" and e.pid == main_pid]
    expected = [t for t in truth if t["op"] == "unshare"]
    for event, t in zip(unshares, expected):
        if t["after_ids"]:
            assert dict(event.ns_id) == {k: v for k, v in t["after_ids"].items() if k in event.ns}
        else:
            assert dict(event.ns_id) == {} and event.to_json()["ns_id"] == {}
            assert event.ns_id_before is None


def test_doctor_reports_what_this_kernel_has(root):
    """`nsgraph doctor` says which optional features the running kernel has and uses."""
    out = subprocess.run([sys.executable, "-m", "tracer.cli", "doctor", "--json", "--quick"],
                         capture_output=True, text=True, timeout=60,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    checks = {c["name"]: c for c in map(json.loads, out.stdout.splitlines())}
    assert out.returncode == 0, out.stdout + out.stderr
    for name in ("privileges", "kernel", "btf", "tracefs", "bcc", "headers"):
        assert checks[name]["status"] == "OK", checks[name]
    # Ground truth for ns ids: the nsfs ioctl, asked directly.
    import fcntl
    fd = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        fcntl.ioctl(fd, (2 << 30) | (8 << 16) | (0xB7 << 8) | 13, bytearray(8))
        kernel_has_ids = True
    except OSError:
        kernel_has_ids = False
    finally:
        os.close(fd)
    detail = checks["feature ns_id"]["detail"]
    assert detail.startswith("ns_common.ns_id present") == kernel_has_ids, detail
    assert "ring buffer" in checks["feature ringbuf"]["detail"]
    assert "kprobes" in checks["feature kprobes"]["detail"] and "not used" in checks["feature kprobes"]["detail"]
    assert "fentry" in checks["feature fentry"]["detail"]
