"""Join sessions, as pure logic (issue 10 items 4 and 7, and the owner tie): whose
container a join into shared namespaces names, the command from the exec's argv, and
the container engines' own switches kept as housekeeping.  The real-tool versions are
in tests/docker/test_model_correctness.py."""

from __future__ import annotations

from synthetic import DEV, HOST, ev, host_snapshot, with_

from tracer import nstypes
from tracer.containers import housekeeping
from tracer.graph import NamespaceGraph

A, B = "a" * 64, "b" * 64
SHARED = with_(HOST, net=300, pid=301, pid_for_children=301, ipc=302)      # A's, B joined them


def container(cid, name, init_pid):
    return {"id": cid, "name": name, "image": "img", "runtime": "docker", "pid": init_pid, "labels": {},
            "state": "running", "pod_uid": None, "source": "docker", "shares": {}}


def proc_op(pid, ns, data):
    return {"op": "proc", "pid": pid, "ppid": 1, "uid": 0, "comm": "sleep", "cmdline": ["sleep"],
            "cgroup": "0::/", "ns": ns, "ts": 1.0, "container": data}


def shared_pair() -> NamespaceGraph:
    """A (init 50) made net/pid/ipc 300-302; B (init 60) is in them too."""
    g = NamespaceGraph(dev=DEV)
    g.load_snapshot(host_snapshot(pids=(1,)))
    g.apply_ops([proc_op(50, SHARED, container(A, "web", 50)), proc_op(60, SHARED, container(B, "side", 60))])
    ns = g.namespace("net:300")
    assert (ns["container_id"], ns["sharer_ids"]) == (A, [B])
    return g


def join(g, pid, types, comm="runc:[1:CHILD]", args=("true",), exec_container=None, exec_pid=None,
         tagged=None):
    """setns into SHARED's `types` by pid, then an exec by exec_pid (default pid) whose
    /proc read shows it in exec_container (None: gone before the read) and that the
    service tagged with container id `tagged`; the closed session's JSON."""
    before = dict(HOST)
    for t in types:
        after = with_(before, **{t: SHARED[t]})
        g.apply(ev("setns", pid, ns=after, before=before, raw_flags=nstypes.TYPE_FLAGS[t], comm=comm))
        before = after
    exec_pid = exec_pid or pid
    if exec_pid != pid:
        g.apply(ev("clone", pid, child_pid=exec_pid, comm=comm))
    if exec_container is not None:
        g.reader.stash({"op": "procread", "pid": exec_pid, "cmdline": list(args), "cgroup": "0::/",
                        "container": exec_container, "nested": True})
    g.apply(ev("exec", exec_pid, comm=args[0], filename="/bin/" + args[0], args=list(args),
               container_id=tagged, container="side" if tagged else None))
    (session,) = [j for j in g.to_json(include_housekeeping=True)["joins"] if j["pid"] == pid]
    assert not session["open"]
    return session


def test_a_join_into_shared_namespaces_names_the_container_its_process_runs_in():
    # `docker exec side` whose session saw only the shared types: A owns them and B shares
    # them, a tie.  The exec'd process runs in B's cgroup: B's, every time (it was A's
    # when the first owner won, as in the flaky CI run).
    for _ in range(3):
        g = shared_pair()
        s = join(g, 70, ("ipc", "net", "pid"), exec_container=container(B, "side", 60), exec_pid=71)
        assert (s["container"], s["container_id"]) == ("side", B), s
    # `docker exec side true`: `true` is gone before /proc is read; the exec event's
    # container (the kernel's cgroup id at the exec, tagged by the service) decides.
    g = shared_pair()
    s = join(g, 72, ("ipc", "net", "pid"), exec_pid=73, tagged=B)
    assert (s["container"], s["container_id"]) == ("side", B), s
    assert NamespaceGraph.from_state(g.export_state()).join(s["id"])["container_id"] == B
    # nsenter from the host into the same namespaces: the owner, A.
    g = shared_pair()
    s = join(g, 80, ("net", "pid"), comm="nsenter", args=("nsenter", "-n", "-p", "true"))
    assert (s["container"], s["container_id"]) == ("web", A), s
    # Replayed from its journal: the same answer (the /proc read is journaled).
    copy = NamespaceGraph.from_state(g.export_state())
    assert [j["container_id"] for j in copy.to_json()["joins"]] == [A]


def test_the_command_is_the_exec_argv_not_a_later_proc_read():
    g = shared_pair()
    # /proc already shows the script's last program when the graph reads it.
    before = dict(HOST)
    after = with_(HOST, net=300)
    g.apply(ev("setns", 90, ns=after, before=before, raw_flags=nstypes.CLONE_NEWNET, comm="ip"))
    g.reader.stash({"op": "procread", "pid": 90, "cmdline": ["sleep", "25"], "cgroup": "0::/", "nested": True})
    g.apply(ev("exec", 90, comm="sh", filename="/bin/sh", args=["sh", "-c", "echo hi; exec sleep 25"]))
    (s,) = g.to_json()["joins"]
    assert (s["command"], s["command_source"]) == ("sh -c echo hi; exec sleep 25", "argv")
    assert s["summary"].endswith("and ran `sh -c echo hi; exec sleep 25`")


def test_dockerd_entering_a_container_net_and_back_is_housekeeping():
    g = shared_pair()
    g.apply(ev("setns", 400, ns=with_(HOST, net=300), before=HOST, raw_flags=nstypes.CLONE_NEWNET,
               comm="dockerd", tid=412))
    g.apply(ev("setns", 400, ns=HOST, before=with_(HOST, net=300), raw_flags=nstypes.CLONE_NEWNET,
               comm="dockerd", tid=412))
    g.apply_ops([{"op": "joins_flush", "now": 2000.0}])
    assert g.to_json()["joins"] == []                   # the join list and diffs leave it out
    (s,) = g.to_json(include_housekeeping=True)["joins"]
    assert (s["housekeeping"], s["comm"], s["container"]) == ("engine", "dockerd", "web")
    assert s["summary"].startswith("housekeeping (engine): joined container web's net namespace")
    assert g.join(s["id"])["housekeeping"] == "engine"  # a lookup by id still finds it
    assert g.counters_snapshot()["housekeeping_joins"] == 1
    diff = g.diff_since(0)
    assert [c for c in diff["changes"] if c["entity"] == "join" and c["op"] != "remove"] == []
    copy = NamespaceGraph.from_state(g.export_state())
    assert copy.to_json()["joins"] == [] and copy.join(s["id"])["housekeeping"] == "engine"


def test_a_runtime_joining_while_it_makes_a_container_is_housekeeping_docker_exec_is_not():
    g = shared_pair()
    # `docker run --network container:web`: runc's child joins web's net, then makes the rest.
    g.apply(ev("setns", 500, ns=with_(HOST, net=300), before=HOST, raw_flags=nstypes.CLONE_NEWNET,
               comm="runc:[1:CHILD]"))
    g.apply(ev("unshare", 500, ns=with_(HOST, net=300, uts=510, mnt=511), before=with_(HOST, net=300),
               raw_flags=nstypes.CLONE_NEWUTS | nstypes.CLONE_NEWNS, comm="runc:[1:CHILD]"))
    # `docker exec side`: runc's unshare(0) asks for nothing new.
    g.apply(ev("setns", 600, ns=with_(HOST, net=300), before=HOST, raw_flags=nstypes.CLONE_NEWNET,
               comm="runc:[1:CHILD]"))
    g.apply(ev("unshare", 600, raw_flags=0, comm="runc:[1:CHILD]"))
    g.apply_ops([{"op": "joins_flush", "now": 3000.0}])
    assert [j["pid"] for j in g.to_json()["joins"]] == [600]
    kinds = {j["pid"]: j["housekeeping"] for j in g.to_json(include_housekeeping=True)["joins"]}
    assert kinds == {500: "container start", 600: None}


def test_trace_hides_only_engine_daemons_setns():
    shown = ev("setns", 1, ns=with_(HOST, net=300), before=HOST, raw_flags=nstypes.CLONE_NEWNET, comm="nsenter")
    engine = ev("setns", 1, ns=with_(HOST, net=300), before=HOST, raw_flags=nstypes.CLONE_NEWNET, comm="dockerd")
    runtime = ev("setns", 1, ns=with_(HOST, net=300), before=HOST, raw_flags=nstypes.CLONE_NEWNET,
                 comm="runc:[1:CHILD]")
    made = ev("unshare", 1, ns=with_(HOST, net=300), before=HOST, raw_flags=nstypes.CLONE_NEWNET, comm="dockerd")
    assert [housekeeping.of_event(e) for e in (shown, engine, runtime, made)] == [None, "engine", None, None]
