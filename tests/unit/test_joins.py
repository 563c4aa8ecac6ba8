"""Join sessions from real kernel event sequences (fast, no root, no Docker).

tests/data/joins_recorded.json holds `nsgraph trace --json --procs` output
recorded on this machine (tests/data/record_joins.py) while these ran:
`docker exec NAME ps aux` (runc 1.1), `nsenter -t PID -a hostname`,
`nsenter --net=/run/netns/X ip -brief link`, a process whose setns calls fail
with EPERM, EBADF and EINVAL between successful ones, two processes joining in
lockstep, and a setns burst that never execs.  Ground truth (the container's
namespace inodes from /proc/<pid>/ns, the netns pin's inode, Docker's
exec_start event) was read from the system at recording time; expected
namespace types come from each call's nstype, decoded here with the kernel's
constants rather than with tracer.nstypes.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from tracer.containers.cgroups import parse_cgroup
from tracer.containers.exec_hints import DockerExecHints
from tracer.containers.records import container_from_ref
from tracer.events.event import Event
from tracer.graph.joins import summary
from tracer.graph.model import NamespaceGraph

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "joins_recorded.json")
# setns(2) nstype values, from <linux/sched.h>.
NSTYPE = {0x00020000: "mnt", 0x02000000: "cgroup", 0x04000000: "uts", 0x08000000: "ipc",
          0x10000000: "user", 0x20000000: "pid", 0x40000000: "net", 0x00000080: "time"}
GAP = 1.0


@pytest.fixture(scope="module")
def fx():
    with open(FIXTURE) as f:
        return json.load(f)


def slots(types: dict) -> dict:
    """A /proc/<pid>/ns reading as the graph's slot map (children slots follow the member ones)."""
    out = dict(types)
    out["pid_for_children"] = types["pid"]
    out["time_for_children"] = types["time"]
    return out


def container_data(fx) -> dict:
    # What the container catalog supplies: the id from the cgroup path, the name from Docker.
    data = container_from_ref(parse_cgroup(fx["container"]["cgroup"])).to_json()
    data["name"] = fx["container"]["name"]
    return data


def make_graph(fx) -> NamespaceGraph:
    """The host as it was when the events were recorded: pid 1, the container's init, the netns pin."""
    g = NamespaceGraph(dev=fx["nsfs_dev"], join_gap=GAP)
    host, cont = fx["host_ns"], fx["container"]["ns"]
    ops = []
    for t, inode in host.items():
        ops.append({"op": "ns", "type": t, "inode": inode, "ts": 1.0})
    for t, inode in cont.items():
        if inode != host[t]:
            ops.append({"op": "ns", "type": t, "inode": inode, "owner_inode": host["user"], "ts": 1.0})
    ops.append({"op": "ns", "type": "net", "inode": fx["netns"]["inode"], "owner_inode": host["user"],
                "pinned": [fx["netns"]["path"]], "ts": 1.0})
    ops.append({"op": "proc", "pid": 1, "ppid": 0, "uid": 0, "comm": "init", "cmdline": ["init"],
                "cgroup": "0::/", "ns": slots(host), "ts": 1.0})
    ops.append({"op": "proc", "pid": fx["container"]["pid"], "ppid": 1, "uid": 0, "comm": "sleep",
                "cmdline": ["sleep", "300"], "cgroup": fx["container"]["cgroup"], "ns": slots(cont),
                "container": container_data(fx), "ts": 1.0})
    ops += [{"op": "link"}, {"op": "host"}]
    g.apply_ops(ops)
    assert g.check_invariants() == []
    return g


def events(fx, name, argv=True):
    """The recorded events; argv=False drops exec's argv (recordings made before it was captured)."""
    return [Event.from_json(e if argv or e["kind"] != "exec" else dict(e, args=None))
            for e in fx["scenarios"][name]["events"]]


def run(fx, *names, graph=None, commands=None, argv=True):
    """Apply the recorded events of the scenarios (merged in kernel order) and return the sessions.

    commands: pid -> argv, the /proc/<pid>/cmdline read the live graph makes at an exec.
    """
    g = graph or make_graph(fx)
    evs = sorted((e for n in names for e in events(fx, n, argv)), key=lambda e: e.seq)
    commands = dict(commands or {})
    for e in evs:
        if e.kind == "exec" and e.pid in commands:
            # Held for the exec (a read made earlier, of another member, is the pre-exec one).
            g.reader.stash({"op": "procread", "pid": e.pid, "cmdline": commands.pop(e.pid), "cgroup": None,
                            "nested": True})
        g.apply(e)
    for pid, argv in commands.items():
        g.reader.stash({"op": "procread", "pid": pid, "cmdline": argv, "cgroup": None, "nested": True})
    assert g.counters["rejected"] == 0
    assert g.check_invariants() == []
    return g, g.to_json()["joins"]


def setns_types(fx, name, pid=None):
    """Namespace types of the successful setns calls, in call order, from their nstype."""
    out = []
    for e in fx["scenarios"][name]["events"]:
        if e["kind"] == "setns" and e["ret"] == 0 and (pid is None or e["pid"] == pid):
            t = NSTYPE[e["raw_flags"]]
            if t not in out:
                out.append(t)
    return out


def exec_of(fx, name, pid_in):
    """The (pid, filename) of the exec that ran the command: the one in the setns caller's lineage."""
    evs = fx["scenarios"][name]["events"]
    family = {pid_in}
    for e in evs:
        if e["pid"] in family and e.get("child_pid"):
            family.add(e["child_pid"])
        if e["kind"] == "exec" and e["pid"] in family and any(
                s["kind"] == "setns" and s["seq"] < e["seq"] and s["pid"] in family for s in evs):
            return e["pid"], e["filename"]
    raise AssertionError("no exec after the setns calls in %s" % name)


def ns_inode(ident):
    return int(ident.split(":")[2])


def test_recording_shows_runc_and_the_failing_calls(fx):
    # runc's child: five setns (ipc, uts, net, pid, mnt), then unshare(0), clone, exec.
    evs = fx["scenarios"]["docker_exec"]["events"]
    runc = [e for e in evs if e["comm"] == "runc:[1:CHILD]"]
    assert [(e["kind"], e["raw_flags"]) for e in runc[:6]] == [
        ("setns", 0x08000000), ("setns", 0x04000000), ("setns", 0x40000000),
        ("setns", 0x20000000), ("setns", 0x00020000), ("unshare", 0)]
    # What the helper's libc calls returned, and what the tracer saw: EPERM, EBADF, EINVAL.
    failing = fx["scenarios"]["failing_setns"]
    assert failing["results"] == [0, -1, -9, -22, 0, 0]
    assert [e["ret"] for e in failing["events"] if e["kind"] == "setns"] == failing["results"]


def test_docker_exec_is_one_session_naming_the_container_types_and_command(fx):
    root = fx["scenarios"]["docker_exec"]["roots"][0]
    exec_pid, filename = exec_of(fx, "docker_exec", root)
    g, sessions = run(fx, "docker_exec")
    assert len(sessions) == 1, sessions
    s = sessions[0]
    name = fx["container"]["name"]
    assert (s["pid"], s["comm"], s["tool"], s["open"]) == (root, "runc:[1:CHILD]", "runc", False)
    assert s["container"] == name and s["container_id"] == fx["container"]["id"]
    assert s["types"] == ["ipc", "uts", "net", "pid", "mnt"] == setns_types(fx, "docker_exec")
    assert {t: ns_inode(i) for t, i in s["target"].items()} == {
        t: fx["container"]["ns"][t] for t in ("ipc", "uts", "net", "pid", "mnt")}
    assert s["exec_pid"] == exec_pid and exec_pid != root      # runc:[2:INIT], runc's clone
    # The command is the argv the kernel captured at the exec.
    assert (s["command"], s["command_source"], s["housekeeping"]) == ("ps aux", "argv", None)
    assert s["summary"] == "joined container %s's ipc, uts, net, pid, mnt namespaces and ran `ps aux`" % name
    assert g.joins.pending_hints(s["end"] + 1.0) == []


def test_without_argv_the_file_name_stands_in_until_docker_names_the_command(fx):
    root = fx["scenarios"]["docker_exec"]["roots"][0]
    exec_pid, filename = exec_of(fx, "docker_exec", root)
    g, sessions = run(fx, "docker_exec", argv=False)
    (s,) = sessions
    name = fx["container"]["name"]
    # Offline, with no /proc to read, the exec'd file stands in for the command ...
    assert (s["command"], s["command_source"]) == (filename, "exec") == ("/bin/ps", "exec")
    # ... until Docker's exec_start event names it, as the service does on its timer.
    hints = DockerExecHints(client_factory=lambda: None)
    for raw in fx["docker_events"]:
        hints.add(raw)
    pending = g.joins.pending_hints(s["end"] + 1.0)
    assert [p.id for p in pending] == [s["id"]]
    command = hints.lookup(pending[0].container, pending[0].start, pending[0].end)
    assert command == fx["scenarios"]["docker_exec"]["command"] == "ps aux"
    g.apply_ops([{"op": "join_command", "id": s["id"], "command": command, "source": "docker"}])
    s = g.join(s["id"])
    assert s["command"] == "ps aux" and s["command_source"] == "docker"
    assert s["summary"] == "joined container %s's ipc, uts, net, pid, mnt namespaces and ran `ps aux`" % name
    assert g.joins.pending_hints(s["end"] + 1.0) == []


def test_a_later_program_in_proc_does_not_replace_the_exec_argv(fx):
    # `sh -c '...; exec sleep 25'`: by the time /proc is read, it shows the later program.
    root = fx["scenarios"]["docker_exec"]["roots"][0]
    exec_pid, _ = exec_of(fx, "docker_exec", root)
    _, sessions = run(fx, "docker_exec", commands={exec_pid: ["sleep", "25"]})
    assert [(s["command"], s["command_source"]) for s in sessions] == [("ps aux", "argv")]


def test_docker_exec_command_from_proc_when_the_event_has_no_argv(fx):
    root = fx["scenarios"]["docker_exec"]["roots"][0]
    exec_pid, _ = exec_of(fx, "docker_exec", root)
    _, sessions = run(fx, "docker_exec", commands={exec_pid: ["ps", "aux"]}, argv=False)
    assert [(s["command"], s["command_source"]) for s in sessions] == [("ps aux", "proc")]


def test_a_cut_argv_is_completed_from_proc_only_while_proc_shows_it(fx):
    root = fx["scenarios"]["docker_exec"]["roots"][0]
    exec_pid, _ = exec_of(fx, "docker_exec", root)
    evs = fx["scenarios"]["docker_exec"]["events"]
    cut = [dict(e, args=["sh", "-c", "echo a long scr..."]) if e["kind"] == "exec" and e["pid"] == exec_pid else e
           for e in evs]
    for proc_argv, expected in ((["sh", "-c", "echo a long script; exec sleep 25"],
                                 ("sh -c echo a long script; exec sleep 25", "proc")),
                                (["sleep", "25"], ("sh -c echo a long scr...", "argv"))):
        g = make_graph(fx)
        for e in cut:
            if e["kind"] == "exec" and e["pid"] == exec_pid:
                g.reader.stash({"op": "procread", "pid": exec_pid, "cmdline": proc_argv, "cgroup": None,
                                "nested": True})
            g.apply(Event.from_json(e))
        (s,) = g.to_json()["joins"]
        assert (s["command"], s["command_source"]) == expected
        # A cut command in a container waits for Docker's exec_start to complete it.
        assert [p.id for p in g.joins.pending_hints(s["end"] + 1.0)] == ([s["id"]] if expected[1] == "argv" else [])


def test_nsenter_all_forks_and_the_child_runs_the_command(fx):
    sc = fx["scenarios"]["nsenter_all"]
    root = sc["roots"][0]
    exec_pid, filename = exec_of(fx, "nsenter_all", root)
    _, sessions = run(fx, "nsenter_all", commands={exec_pid: ["hostname"]})
    assert len(sessions) == 1, sessions
    s = sessions[0]
    assert (s["pid"], s["tool"], s["exec_pid"], s["command"]) == (root, "nsenter", exec_pid, "hostname")
    assert exec_pid != root                     # entering a pid namespace needs a fork
    # nsenter -a also calls setns for cgroup and time (the container shares the host's).
    expected = setns_types(fx, "nsenter_all")
    assert s["types"] == expected and {"ipc", "uts", "net", "pid", "mnt"} <= set(expected)
    for t in ("ipc", "uts", "net", "pid", "mnt"):
        assert ns_inode(s["target"][t]) == fx["container"]["ns"][t]
    assert s["container"] == fx["container"]["name"]
    assert s["summary"].startswith("joined container %s's %s namespaces" % (s["container"], ", ".join(expected)))
    assert s["summary"].endswith("and ran `hostname`")


def test_nsenter_into_a_pinned_netns_without_a_fork(fx):
    sc = fx["scenarios"]["nsenter_netns"]
    root = sc["roots"][0]
    exec_pid, filename = exec_of(fx, "nsenter_netns", root)
    g, sessions = run(fx, "nsenter_netns")
    assert len(sessions) == 1, sessions
    s = sessions[0]
    assert (s["pid"], s["exec_pid"], s["types"], s["container"]) == (root, root, ["net"], None)
    assert ns_inode(s["target"]["net"]) == fx["netns"]["inode"]
    assert g.namespace(s["target"]["net"])["pinned"] == [fx["netns"]["path"]]
    # nsenter execs ip in place: the argv the kernel captured, as the recording ran it.
    assert (s["command"], s["command_source"]) == (sc["command"], "argv") == ("ip -brief link", "argv")
    assert s["summary"] == "joined net namespace (%s) and ran `ip -brief link`" % s["target"]["net"]
    _, sessions = run(fx, "nsenter_netns", argv=False)
    assert sessions[0]["summary"] == "joined net namespace (%s) and ran `%s`" % (s["target"]["net"], filename)


def test_failed_setns_calls_are_not_joins(fx):
    root = fx["scenarios"]["failing_setns"]["roots"][0]
    g, sessions = run(fx, "failing_setns")
    assert g.counters["failed_calls"] == 3
    assert len(sessions) == 1, sessions
    s = sessions[0]
    first_ok = [e for e in events(fx, "failing_setns") if e.kind == "setns" and e.ret == 0][0]
    assert s["start"] == first_ok.ts
    assert s["types"] == ["ipc", "uts", "net"] == setns_types(fx, "failing_setns")
    assert {t: ns_inode(i) for t, i in s["target"].items()} == {
        t: fx["container"]["ns"][t] for t in ("ipc", "uts", "net")}
    assert (s["exec_pid"], s["command"], s["container"]) == (root, "hostname", fx["container"]["name"])

    # The failing calls alone open nothing.
    g = make_graph(fx)
    for e in events(fx, "failing_setns"):
        if e.kind != "setns" or e.ret < 0:
            g.apply(e)
    assert g.to_json()["joins"] == [] and g.counters["failed_calls"] == 3


def test_interleaved_sessions_of_two_processes_stay_apart(fx):
    a, b = fx["scenarios"]["interleaved"]["roots"]
    evs = fx["scenarios"]["interleaved"]["events"]
    setns_pids = [e["pid"] for e in evs if e["kind"] == "setns"]
    assert setns_pids == [a, b, a, b], "the recording did not interleave"
    _, sessions = run(fx, "interleaved", commands={a: ["hostname"], b: ["ip", "-brief", "link"]})
    by_pid = {s["pid"]: s for s in sessions}
    assert sorted(by_pid) == sorted([a, b]) and len(sessions) == 2
    sa, sb = by_pid[a], by_pid[b]
    assert sa["types"] == setns_types(fx, "interleaved", a) == ["uts", "ipc"]
    assert sb["types"] == setns_types(fx, "interleaved", b) == ["net", "uts"]
    assert ns_inode(sb["target"]["net"]) == fx["netns"]["inode"]
    assert ns_inode(sb["target"]["uts"]) == ns_inode(sa["target"]["uts"]) == fx["container"]["ns"]["uts"]
    assert (sa["command"], sa["exec_pid"]) == ("hostname", a)
    assert (sb["command"], sb["exec_pid"]) == ("ip -brief link", b)
    assert not sa["open"] and not sb["open"]


def test_setns_burst_without_exec_closes_after_the_quiet_gap(fx):
    evs = events(fx, "no_exec")
    setns = [e for e in evs if e.kind == "setns"]
    rest = [e for e in evs if e.seq > setns[-1].seq]
    assert rest and rest[0].ts - setns[-1].ts > GAP, "the recording has no quiet gap"
    g = make_graph(fx)
    for e in evs:
        if e.seq <= setns[-1].seq:
            g.apply(e)
    (s,) = g.to_json()["joins"]
    assert s["open"] and s["types"] == ["net", "uts"]
    g.apply_ops([{"op": "joins_flush", "now": setns[-1].ts + GAP / 2}])
    assert g.join(s["id"])["open"]
    for e in rest:
        g.apply(e)                                  # the exit, 1.6 s later, closes it
    s = g.join(s["id"])
    assert not s["open"] and s["end"] == setns[-1].ts
    assert (s["command"], s["exec_pid"]) == (None, None)
    assert s["container"] == fx["container"]["name"]
    assert s["summary"] == "joined container %s's net, uts namespaces" % s["container"]


def test_quiet_gap_closes_on_the_timer_too(fx):
    evs = [e for e in events(fx, "no_exec") if e.kind != "exit"]
    g = make_graph(fx)
    for e in evs:
        g.apply(e)
    last = max(e.ts for e in evs if e.kind == "setns")
    g.apply_ops([{"op": "joins_flush", "now": last + GAP * 1.5}])
    (s,) = g.to_json()["joins"]
    assert not s["open"] and s["end"] == last


def test_all_recordings_in_one_stream_give_the_same_sessions(fx):
    names = list(fx["scenarios"])
    alone = {}
    for n in names:
        for s in run(fx, n)[1]:
            alone[s["pid"]] = s
    together = {s["pid"]: s for s in run(fx, *names)[1]}
    strip = lambda s: {k: v for k, v in s.items() if k != "id"}      # noqa: E731
    assert {p: strip(s) for p, s in together.items()} == {p: strip(s) for p, s in alone.items()}
    assert len(together) == 7      # interleaved counts twice


def test_sessions_survive_a_checkpoint_and_keep_closing(fx):
    g = make_graph(fx)
    evs = events(fx, "docker_exec")
    cut = [i for i, e in enumerate(evs) if e.kind == "clone" and e.comm == "runc:[1:CHILD]"][0]
    for e in evs[:cut]:
        g.apply(e)
    copy = NamespaceGraph.from_state(json.loads(json.dumps(g.export_state())), join_gap=GAP)
    assert copy.to_json()["joins"] == g.to_json()["joins"]
    assert copy.to_json()["joins"][0]["open"]
    for graph in (g, copy):
        for e in evs[cut:]:
            graph.apply(e)
    assert copy.to_json()["joins"] == g.to_json()["joins"]
    assert not copy.to_json()["joins"][0]["open"]


def test_malformed_setns_is_counted_not_a_session(fx):
    g = make_graph(fx)
    raw = dict(fx["scenarios"]["nsenter_netns"]["events"][2])
    assert raw["kind"] == "setns"
    raw["ns"] = dict(raw["ns"], bogus_slot=5)
    g.apply(Event.from_json(raw))
    assert g.counters["rejected"] == 1 and g.to_json()["joins"] == []


def test_summary_wording():
    assert summary("web", ["net"], None, {}) == "joined container web's net namespace"
    assert summary(None, ["uts", "ipc"], "sh", {"uts": "uts:4:9:0"}) == \
        "joined uts, ipc namespaces (uts:4:9:0) and ran `sh`"
    assert summary(None, [], None, {}) == "joined no namespaces"


def test_docker_exec_hints_skip_odd_events_and_match_by_container_and_time():
    hints = DockerExecHints(client_factory=lambda: None)
    for bad in ({}, {"Action": "start"}, {"Action": "exec_start"}, {"Action": "exec_start: ls"},
                {"status": "exec_start: ls", "id": "c9", "time": "not a number"},
                {"Action": "exec_start: ls", "Actor": "c1"}, {"Action": 5}, None, "exec_start: ls"):
        hints.add(bad)
    # Not exec_start at all ({}, "start", 5) is no concern of ours; the rest lack a command or an id.
    assert hints.skipped == 5
    assert hints.lookup("c9", time.time() - 1, None) == "ls"     # an unreadable time means "now"
    assert hints.lookup("c1", 0.0, 1e12) is None
    hints.add({"Action": "exec_start: ps aux", "Actor": {"ID": "c1"}, "timeNano": 100 * 10**9})
    assert hints.lookup("c1", 101.0, 101.5) == "ps aux"
    assert hints.lookup("c2", 101.0, 101.5) is None
    assert hints.lookup("c1", 200.0, 200.5) is None
