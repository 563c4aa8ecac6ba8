"""The probes against a real Docker engine: `docker run` creates the container's
namespaces, `docker exec` joins them through runc's setns calls.  Ground truth is
/proc/<State.Pid>/ns/* of the container's init process."""

from __future__ import annotations

import os
import secrets
import time

import pytest

from tests.workloads.ns_workload import own_ns, own_ns_ids


JOINED_TYPES = ("ipc", "uts", "net", "pid", "mnt")


def proc_ns(pid):
    return own_ns(pid, ("mnt", "pid", "net", "uts", "ipc", "user", "cgroup"))


def proc_ns_ids(pid):
    return own_ns_ids(pid, ("mnt", "pid", "net", "uts", "ipc", "cgroup"))


@pytest.fixture(scope="module")
def container(docker_client, live_events):
    from webapp.demos.image import ensure_demo_image

    image = ensure_demo_image(docker_client)
    name = "nsgtest-tracer-" + secrets.token_hex(4)
    mark = live_events.mark()
    c = docker_client.containers.run(image, ["sleep", "300"], name=name, detach=True,
                                     labels={"org.nsgraph.test": "1"})
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            c.reload()
            if c.attrs["State"]["Running"] and c.attrs["State"]["Pid"]:
                break
            time.sleep(0.1)
        pid = c.attrs["State"]["Pid"]
        truth = proc_ns(pid)
        truth_ids = proc_ns_ids(pid)
        run_events = live_events.since(mark)
        yield {"container": c, "name": name, "pid": pid, "ns": truth, "ns_ids": truth_ids,
               "run_events": run_events}
    finally:
        c.remove(force=True)


def creating_event(events, ns_type, inode, ns_id):
    """The clone/unshare event that made a namespace of this type and identity."""
    for e in events:
        if e.kind not in ("clone", "unshare") or e.failed:
            continue
        slot = "pid_for_children" if ns_type == "pid" and e.kind == "unshare" else ns_type
        if e.ns.get(slot) == inode and slot in e.changed_types():
            if ns_id is None or e.ns_id.get(slot) == ns_id:
                return e
    return None


def test_docker_run_creates_the_container_namespaces(container):
    host = proc_ns(os.getpid())
    events = container["run_events"]
    for ns_type in ("mnt", "uts", "ipc", "net", "pid"):
        inode = container["ns"][ns_type]
        assert inode != host[ns_type], "the container shares the host's %s namespace" % ns_type
        event = creating_event(events, ns_type, inode, container["ns_ids"].get(ns_type))
        assert event is not None, "no event created the container's %s:[%d]" % (ns_type, inode)
        assert event.comm.startswith("runc"), event.comm


def test_docker_exec_joins_through_runc_setns(container, live_events):
    from tracer.graph.model import NamespaceGraph
    from tracer.host.snapshot import take_snapshot

    # The model the events are applied to starts from /proc, as `nsgraph serve`'s does.
    graph = NamespaceGraph()       # offline: its default ReplayProcReader never reads /proc
    graph.load_snapshot(take_snapshot())
    mark = live_events.mark()
    result = container["container"].exec_run(["ps", "aux"])
    assert result.exit_code == 0
    assert b"sleep 300" in result.output
    events = live_events.since(mark)
    setns = [e for e in events if e.kind == "setns" and e.comm == "runc:[1:CHILD]" and not e.failed]
    # What each runc:[1:CHILD] joined (others may exec into their containers meanwhile).
    joined_by = {}
    for e in setns:
        joined = joined_by.setdefault(e.pid, {})
        for t in e.flag_ns_types():
            slot = "pid_for_children" if t == "pid" else t
            joined[t] = e.ns[slot]
    ours = [j for j in joined_by.values() if set(JOINED_TYPES) <= set(j)
            and all(j[t] == container["ns"][t] for t in JOINED_TYPES)]
    assert len(ours) == 1, ([(e.pid, e.flags, e.ns_types()) for e in setns], container["ns"])
    # The exec'd command ends up in the container's namespaces.  Its fork and exec
    # records name no namespace (nothing changed): the model derives them from
    # runc:[1:CHILD]'s joins, down the chain of forks.
    execs = [e for e in events if e.kind == "exec" and e.filename and e.filename.endswith("ps")]
    assert execs, "exec of ps not seen"
    for event in events:
        graph.apply(event)
        if event is execs[-1]:
            break
    ps = graph.process(execs[-1].pid)
    assert ps is not None, "the model does not know the exec'd ps"
    for t in ("mnt", "net", "uts", "ipc", "pid"):
        # Namespace ids are type:device:inode:generation.
        assert int(ps["ns"][t].split(":")[2]) == container["ns"][t], t


def test_events_of_a_gone_container_are_attributed_by_cgroup_id(docker_client, live_events):
    """`docker run --rm IMG ls`: ls, and often its cgroup, are gone before user space
    looks; the cgroup id captured at the event and the path the probes recorded when
    the cgroup was made still name the container (tagged as `nsgraph trace` does)."""
    from tracer.containers.attribution import CgroupIds, EventContainers
    from webapp.demos.image import ensure_demo_image

    image = ensure_demo_image(docker_client)
    tagger = EventContainers(catalog=None, cgroup_ids=CgroupIds(kernel_lookup=live_events.collector.probes.cgroup_path))
    tagged = []

    def tag_ls(event):
        if event.kind == "exec" and event.comm == "ls":
            tagged.append((event, tagger.tag(event)))

    live_events.collector.subscribe(tag_ls)
    mark = live_events.mark()
    c = docker_client.containers.run(image, ["ls", "-la", "/proc/self/ns/"], detach=True,
                                     name="nsgtest-tracer-" + secrets.token_hex(4))
    try:
        assert c.wait(timeout=30)["StatusCode"] == 0
        container_id = c.id
    finally:
        c.remove(force=True)
    live_events.since(mark)
    # Other users' containers may run ls meanwhile (a shared host): ours is the one run
    # in our container, and exactly one is.
    ours = [(e, c) for e, c in tagged if c is not None and c.id == container_id]
    assert len(ours) == 1, [(e.pid, c.id if c else None) for e, c in tagged]
    event, container = ours[0]
    assert event.cgroup_id != 0
    assert event.container == container_id[:12]
