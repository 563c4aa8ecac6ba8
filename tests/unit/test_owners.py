"""Who owns a shared namespace (issue 10 item 1), as pure logic: the creating event's
container, else docker inspect's `container:X` modes and init pids; every other
member container is a sharer.  The real-Docker version is tests/docker/test_model_correctness.py."""

from __future__ import annotations

from synthetic import DEV, HOST, ev, host_snapshot, with_

from tracer import nstypes
from tracer.graph import NamespaceGraph

A, B = "a" * 64, "b" * 64


def container(cid, name, init_pid, shares=None):
    return {"id": cid, "name": name, "image": "img", "runtime": "docker", "pid": init_pid, "labels": {},
            "state": "running", "pod_uid": None, "source": "docker", "shares": dict(shares or {})}


def proc_op(pid, ns, data):
    return {"op": "proc", "pid": pid, "ppid": 1, "uid": 0, "comm": "sleep", "cmdline": ["sleep"],
            "cgroup": "0::/", "ns": ns, "ts": 1.0, "container": data}


def test_the_creating_event_names_the_owner_whatever_the_member_pids():
    # A's runtime made net 300; B (`--network container:A`) joined it and has the lower pid,
    # so "the lowest member pid's container" (the old rule) said B.
    g = NamespaceGraph(dev=DEV)
    g.load_snapshot(host_snapshot(pids=(1,)))
    g.apply_ops([proc_op(50, HOST, container(A, "web", 50)), proc_op(8, HOST, container(B, "side", 8))])
    g.apply(ev("unshare", 50, ns=with_(HOST, net=300), before=HOST, raw_flags=nstypes.CLONE_NEWNET,
               container="web", container_id=A))
    g.apply(ev("setns", 8, ns=with_(HOST, net=300), before=HOST, raw_flags=nstypes.CLONE_NEWNET,
               container="side", container_id=B))
    net = g.namespace("net:300")
    assert (net["container"], net["container_id"]) == ("web", A)
    assert (net["sharers"], net["sharer_ids"]) == (["side"], [B])
    assert net["creator"]["container"] == "web"
    copy = NamespaceGraph.from_state(g.export_state())
    assert copy.namespace("net:300")["container_id"] == A
    assert [n["id"] for n in g.container("web")["namespaces"]] == [net["id"]]
    assert g.container("side")["namespaces"] == []
    assert [n["id"] for n in g.container("side")["shared"]] == [net["id"]]
    # The creator keeps its container when the container is gone.
    g.apply_ops([{"op": "container_gone", "id": A}])
    assert g.namespace("net:300")["container"] == "web"


def test_found_by_proc_the_inspect_modes_then_init_pids_decide():
    snap = host_snapshot(pids=(1,))
    g = NamespaceGraph(dev=DEV)
    g.load_snapshot(snap)
    shared = with_(HOST, net=300, pid=301, pid_for_children=301, uts=302)
    # B declares net and pid from A; uts 302 is nobody's by declaration: A's init is in it.
    g.apply_ops([proc_op(8, shared, container(B, "side", 8, {"net": A, "pid": A})),
                 proc_op(50, shared, container(A, "web", 50))])
    for t, inode in (("net", 300), ("pid", 301)):
        ns = g.namespace("%s:%d" % (t, inode))
        assert ns["creator"] is None
        assert (ns["container"], ns["sharers"]) == ("web", ["side"]), ns
    uts = g.namespace("uts:302")
    # Both inits are members: the lowest init pid (an older container) wins, by rule, not by chance.
    assert (uts["container"], uts["sharers"]) == ("side", ["web"])


def test_a_chain_of_container_modes_leads_to_the_container_that_made_it():
    # X made net 300 and is gone; Y joined X's (`--network container:X`), Z joined Y's.
    # The random mix (tests/workloads/random_mix.py) found a snapshot crediting Y.
    X, Y, Z = "9" * 64, "1" * 64, "0" * 64       # Z sorts first: no luck of the order
    g = NamespaceGraph(dev=DEV)
    g.load_snapshot(host_snapshot(pids=(1,)))
    shared = with_(HOST, net=300)
    g.apply_ops([proc_op(8, shared, container(Y, "y", 8, {"net": X})),
                 proc_op(9, shared, container(Z, "z", 9, {"net": Y}))])
    net = g.namespace("net:300")
    assert (net["container_id"], net["sharer_ids"]) == (X, [Z, Y]), net


def test_host_namespaces_have_no_owner_or_sharers():
    g = NamespaceGraph(dev=DEV)
    g.load_snapshot(host_snapshot(pids=(1,)))
    g.apply_ops([proc_op(8, HOST, container(B, "side", 8))])
    net = g.namespace("net:102")
    assert (net["container"], net["sharers"]) == (None, [])


def test_a_join_of_every_type_says_which_ones_changed():
    # `nsenter -a`: one setns per type; only net differs from where the caller was.
    g = NamespaceGraph(dev=DEV, join_gap=0.5)
    g.load_snapshot(host_snapshot(pids=(1, 20)))
    g.apply_ops([{"op": "ns", "type": "net", "inode": 300, "ts": 1.0}])
    g.apply(ev("setns", 20, ns=HOST, before=HOST, raw_flags=nstypes.CLONE_NEWUTS, comm="nsenter", ts=10.0))
    g.apply(ev("setns", 20, ns=with_(HOST, net=300), before=HOST, raw_flags=nstypes.CLONE_NEWNET,
               comm="nsenter", ts=10.001))
    g.apply(ev("exec", 20, ns=with_(HOST, net=300), comm="true", filename="/bin/true", ts=10.002))
    (join,) = g.to_json()["joins"]
    assert join["types"] == ["uts", "net"] and join["changed"] == ["net"]
    assert "(changed: net)" in join["summary"], join["summary"]
