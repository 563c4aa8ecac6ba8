"""The model's JSON is exactly the Graph JSON of tracer/graph/schema.py.

A graph from a synthetic snapshot, then events that exercise every part of the
output: new namespaces with creators (clone, unshare), a thread of its own
(threads), a container, a pinned namespace, an ended namespace, a join session.
check_shape runs on to_json(), diff_since() and every lookup.
"""

from __future__ import annotations

from synthetic import DEV, HOST, ev, host_snapshot, with_

from tracer import nstypes
from tracer.graph import NamespaceGraph, schema
from tracer.host.snapshot import NsInfo

CONTAINER = {"id": "c0ffee" * 10 + "abcd", "name": "web", "image": "nsgraph-demo:latest", "runtime": "docker",
             "pid": 60, "labels": {"app": "web"}, "state": "running", "pod_uid": None, "source": "docker"}


def busy_graph():
    g = NamespaceGraph(dev=DEV)
    pin = NsInfo("net", 300, DEV, ns_id=300, owner_inode=105, pinned=["/run/netns/blue"])
    g.load_snapshot(host_snapshot(pids=(1, 50, 55), extra_ns=[pin]))
    v0 = g.version
    g.apply_ops([{"op": "container", "data": CONTAINER}])
    cont = with_(HOST, net=201, uts=202, mnt=203, pid=204, pid_for_children=204)
    g.apply(ev("clone", 50, ns=cont, before=HOST, child_pid=60, comm="runc:[1:CHILD]",
               raw_flags=nstypes.CLONE_NEWNET | nstypes.CLONE_NEWUTS | nstypes.CLONE_NEWNS
               | nstypes.CLONE_NEWPID | 17))
    g.apply_ops([{"op": "procread", "pid": 60, "cmdline": ["sleep", "300"], "cgroup": "0::/docker/x",
                  "container": CONTAINER}])
    g.apply(ev("unshare", 55, ns=with_(HOST, ipc=205), before=HOST, raw_flags=nstypes.CLONE_NEWIPC))
    g.apply(ev("exit", 55))
    g.end_orphans()                 # ipc 205 ended with its only member
    g.apply(ev("setns", 50, tid=51, ns=with_(HOST, net=300), before=HOST, raw_flags=nstypes.CLONE_NEWNET))
    # a join: setns into the container, then exec
    g.apply(ev("setns", 70, ns=with_(HOST, net=201), before=HOST, raw_flags=nstypes.CLONE_NEWNET, comm="nsenter"))
    g.apply(ev("exec", 70, ns=with_(HOST, net=201), filename="/bin/ip", comm="ip"))
    return g, v0


def _problems(value, shape):
    problems = schema.check_shape(value, shape)
    assert problems == [], problems
    return value


def test_to_json_is_graph_json_with_every_part_present():
    g, _ = busy_graph()
    data = _problems(g.to_json(), schema.GraphJSON)
    assert any(not n["alive"] for n in data["namespaces"])
    assert any(n["creator"] for n in data["namespaces"])
    assert any(n["pinned"] for n in data["namespaces"])
    assert any("threads" in p for p in data["processes"])
    assert any(n["container"] == "web" for n in data["namespaces"])
    joined = [j for j in data["joins"] if j["comm"] == "nsenter"]
    assert [(j["container"], j["command"], j["open"]) for j in joined] == [("web", "/bin/ip", False)]
    assert data["containers"] == [CONTAINER]
    _problems(g.to_json(include_ended=False, include_processes=False), schema.GraphJSON)


def test_diff_since_is_a_graph_diff():
    g, v0 = busy_graph()
    diff = _problems(g.diff_since(v0), schema.GraphDiff)
    entities = {c["entity"] for c in diff["changes"]}
    assert entities == {"namespace", "process", "container", "join"}
    shapes = {"namespace": schema.NamespaceJSON, "process": schema.ProcessJSON,
              "container": schema.ContainerJSON, "join": schema.JoinJSON}
    for change in diff["changes"]:
        if change["data"] is not None:
            _problems(change["data"], shapes[change["entity"]])
    g.apply(ev("exit", 60))
    removed = g.diff_since(g.version - 1)["changes"]
    _problems({"version": g.version, "since": g.version - 1, "changes": removed}, schema.GraphDiff)
    assert {"op": "remove", "entity": "process", "id": 60, "data": None} in removed


def test_lookups_have_their_detail_shapes():
    g, _ = busy_graph()
    net = _problems(g.namespace("net:201"), schema.NamespaceDetail)
    assert [p["pid"] for p in net["processes"]] == [60, 70] and net["container"] == "web"
    assert g.namespace(net["id"]) == net
    _problems(g.process(50), schema.ProcessJSON)
    for key in ("web", CONTAINER["id"], CONTAINER["id"][:4]):
        detail = _problems(g.container(key), schema.ContainerDetail)
        assert [p["pid"] for p in detail["processes"]] == [60]
        assert {n["inode"] for n in detail["namespaces"]} == {201, 202, 203, 204}
    assert g.container(CONTAINER["id"][:3]) is None         # too short a prefix
    for join in g.to_json()["joins"]:
        assert _problems(g.join(join["id"]), schema.JoinJSON) == join
        assert g.join(str(join["id"])) == join
    assert g.join("x") is None and g.join(99) is None
    _problems(g.counters_snapshot(), schema.Counters)
    for n in g.history():
        _problems(n, schema.NamespaceJSON)


def test_a_checkpoint_keeps_the_shapes():
    g, _ = busy_graph()
    copy = NamespaceGraph.from_state(g.export_state())
    a, b = g.to_json(), _problems(copy.to_json(), schema.GraphJSON)
    a.pop("time"), b.pop("time")
    assert a == b
