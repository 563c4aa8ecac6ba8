"""Model correctness on real-world workloads (issue 10), against real Docker, the
real kernel and /proc: who owns a shared namespace (`--network/--pid/--ipc
container:A`), namespaces only a thread holds, zombies, `docker exec` in
`trace --container`.  Ground truth: /proc/<pid>/ns, /proc/<pid>/task/*/ns,
`docker inspect`, lsns."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid

import pytest

from conftest import require, stderr_until_banner, wait_until

PREFIX = "nsgtest-correct-%s" % uuid.uuid4().hex[:8]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NSGRAPH = os.path.join(REPO, ".venv", "bin", "nsgraph")


def ns_inode(pid, t):
    return os.stat("/proc/%d/ns/%s" % (pid, t)).st_ino


@pytest.fixture(scope="module")
def service(root, docker_client, tmp_path_factory):
    from webapp.demos.image import ensure_demo_image
    from tracer.service import NsgraphService, ServiceConfig
    image = ensure_demo_image(docker_client)
    svc = NsgraphService(ServiceConfig(db="none", reconcile_s=3600))
    assert svc.start(), svc.status.error
    svc.test_image = image
    yield svc
    svc.stop()
    for name in [c.name for c in docker_client.containers.list(all=True) if c.name.startswith(PREFIX)]:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def docker(*args):
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture()
def shared_pair(service):
    """A (donor, ipc shareable) and B with --network/--pid/--ipc container:A; both started
    while tracing.  Yields (name_a, id_a, init_a, name_b, id_b, init_b)."""
    a, b = PREFIX + "-a", PREFIX + "-b"
    docker("run", "-d", "--name", a, "--ipc", "shareable", service.test_image, "sleep", "300")
    docker("run", "-d", "--name", b, "--network", "container:" + a, "--pid", "container:" + a,
           "--ipc", "container:" + a, service.test_image, "sleep", "300")
    try:
        info = json.loads(docker("inspect", a, b))
        ia, ib = info
        assert ib["HostConfig"]["NetworkMode"] == "container:" + ia["Id"]
        yield a, ia["Id"], ia["State"]["Pid"], b, ib["Id"], ib["State"]["Pid"]
    finally:
        subprocess.run(["docker", "rm", "-f", b, a], capture_output=True)


def test_shared_namespaces_belong_to_the_donor_everywhere(service, shared_pair):
    a, id_a, init_a, b, id_b, init_b = shared_pair
    shared = {t: ns_inode(init_a, t) for t in ("net", "pid", "ipc")}
    own_b = {t: ns_inode(init_b, t) for t in ("uts", "mnt")}
    for t, inode in shared.items():        # ground truth: B really is in A's namespaces
        assert ns_inode(init_b, t) == inode
    assert all(ns_inode(init_a, t) != inode for t, inode in own_b.items())
    graph = service.graph

    def live_ok():
        for t, inode in shared.items():
            ns = graph.namespace("%s:%d" % (t, inode))
            if ns is None or (ns["container_id"], ns["sharer_ids"]) != (id_a, [id_b]):
                return False
        return all((graph.namespace("%s:%d" % (t, i)) or {}).get("container_id") == id_b
                   for t, i in own_b.items())
    assert wait_until(live_ok), [graph.namespace("%s:%d" % (t, i)) for t, i in shared.items()]
    ns = graph.namespace("net:%d" % shared["net"])
    assert (ns["container"], ns["sharers"]) == (a, [b])
    assert ns["creator"]["container_id"] == id_a          # the runtime's unshare/clone in A's cgroup

    # /api/container's view: A owns them, B shares them.
    detail_a, detail_b = graph.container(a), graph.container(b)
    owned_a = {(n["type"], n["inode"]) for n in detail_a["namespaces"]}
    assert {(t, i) for t, i in shared.items()} <= owned_a
    assert not {(t, i) for t, i in shared.items()} & {(n["type"], n["inode"]) for n in detail_b["namespaces"]}
    assert {(t, i) for t, i in shared.items()} <= {(n["type"], n["inode"]) for n in detail_b["shared"]}

    # A join into the shared net names its owner; `docker exec B` stays B's.
    t0 = time.time()
    subprocess.run(["nsenter", "-t", str(init_b), "-n", "--", "true"], check=True)
    subprocess.run(["docker", "exec", b, "true"], check=True)

    def joins():
        return [j for j in graph.to_json()["joins"] if j["start"] >= t0 - 0.5 and not j["open"]]
    found = wait_until(lambda: len([j for j in joins() if j["tool"] in ("nsenter", "runc")]) >= 2)
    by_tool = {j["tool"]: j for j in joins()}
    assert by_tool["nsenter"]["container"] == a, found
    assert by_tool["nsenter"]["summary"].startswith("joined container %s's net namespace" % a)
    assert by_tool["runc"]["container"] == b, found

    # A fresh snapshot (the CLI, with docker inspect) credits them by the same rule.
    out = subprocess.run([NSGRAPH, "snapshot", "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    spaces = {(n["type"], n["inode"]): n for n in json.loads(out.stdout)["namespaces"]}
    for t, inode in shared.items():
        n = spaces[(t, inode)]
        assert (n["container"], n["container_id"], n["sharers"]) == (a, id_a, [b]), n
    for t, inode in own_b.items():
        assert (spaces[(t, inode)]["container"], spaces[(t, inode)]["sharers"]) == (b, [])


def test_nsenter_all_says_which_types_changed(service):
    name = PREFIX + "-all"
    docker("run", "-d", "--name", name, service.test_image, "sleep", "300")
    try:
        init = json.loads(docker("inspect", name))[0]["State"]["Pid"]
        types = ("mnt", "uts", "ipc", "net", "pid", "cgroup", "user", "time")
        # Ground truth: the types where the container's namespace is not this shell's.
        differ = {t for t in types if ns_inode(init, t) != ns_inode(os.getpid(), t)}
        assert "user" not in differ and {"net", "mnt"} <= differ
        t0 = time.time()
        out = subprocess.run(["nsenter", "-a", "-t", str(init), "--", "/bin/true"], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr

        def found():
            return [j for j in service.graph.to_json()["joins"]
                    if j["start"] >= t0 - 0.5 and j["tool"] == "nsenter" and not j["open"]]
        (join,) = wait_until(found)
        assert set(join["changed"]) == differ, join
        assert set(join["types"]) > differ
        assert "(changed: %s)" % ", ".join(t for t in join["types"] if t in differ) in join["summary"], join
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def test_trace_container_shows_docker_exec_and_names_nothing_found(service):
    name = PREFIX + "-trace"
    docker("run", "-d", "--name", name, service.test_image, "sleep", "300")
    missing = PREFIX + "-nosuch"
    try:
        init = json.loads(docker("inspect", name))[0]["State"]["Pid"]
        net = ns_inode(init, "net")
        trace = subprocess.Popen([NSGRAPH, "trace", "--json", "--container", name, "--container", missing,
                                  "--duration", "25"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # Once tracing (the banner), exec into the container.
            errors = stderr_until_banner(trace)
            time.sleep(1.0)
            subprocess.run(["docker", "exec", name, "true"], check=True)
            out, rest = trace.communicate(timeout=90)
        finally:
            if trace.poll() is None:
                trace.kill()
        stderr = "".join(errors) + rest
        assert "no container matches --container %s" % missing in stderr, stderr
        assert name not in stderr.split("Tracing")[0], stderr
        events = [json.loads(line) for line in out.splitlines()]
        setns = [e for e in events if e["kind"] == "setns" and e["ret"] == 0]
        into_net = [e for e in setns if e["ns"].get("net") == net]
        assert into_net, "no setns into %s's net namespace shown: %s" % (name, events[:20])
        for e in setns:
            assert e.get("target_container") == name or e["container"] == name, e
        # runc's calls happen before it joins the cgroup: its own container stays null.
        assert any(e["container"] is None and e["target_container"] == name for e in into_net), into_net
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def test_join_commands_are_what_was_exec_not_a_later_program(service):
    # `ip netns exec X sh -c '...; exec sleep 25'` and `docker exec C sh -c '...'`:
    # by the time anyone reads /proc the script has exec'd its last program.
    netns, name = PREFIX + "-argv", PREFIX + "-argv"
    script = "echo $$; exec sleep 25"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    docker("run", "-d", "--name", name, service.test_image, "sleep", "300")
    ip = None
    try:
        t0 = time.time()
        ip = subprocess.Popen(["ip", "netns", "exec", netns, "sh", "-c", script], stdout=subprocess.PIPE, text=True)
        pid = int(ip.stdout.readline())
        # Ground truth: the process runs `sleep 25` now; it ran `sh -c <script>` in the netns.
        assert wait_until(lambda: open("/proc/%d/cmdline" % pid).read().split("\0")[:2] == ["sleep", "25"])
        net = ns_inode(pid, "net")
        assert net == os.stat("/run/netns/" + netns).st_ino
        exec_out = docker("exec", name, "sh", "-c", "echo $$; exec sleep 0.2")
        assert exec_out.isdigit()
        graph = service.graph
        assert service.collector.sync(timeout=120)      # a busy host: every event so far applied

        def sessions():
            return {j["tool"]: j for j in graph.to_json()["joins"] if j["start"] >= t0 - 0.5 and not j["open"]}
        found = wait_until(lambda: {"ip", "runc"} <= set(sessions()), timeout=30)
        by_tool = sessions()
        assert by_tool.get("ip", {}).get("command") == "sh -c " + script, found
        assert by_tool["ip"]["exec_pid"] == pid and by_tool["ip"]["command_source"] == "argv"
        assert by_tool["ip"]["target"]["net"] == graph.namespace("net:%d" % net)["id"]
        assert by_tool["runc"]["command"] == "sh -c echo $$; exec sleep 0.2", by_tool["runc"]
        assert by_tool["runc"]["container"] == name
    finally:
        if ip is not None:
            ip.kill()
            ip.wait()
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def test_dockerd_switching_into_a_new_container_is_housekeeping(service):
    """dockerd enters each new container's net namespace (to set up its interfaces) and
    returns: recorded, hidden from the join list and trace's default view, shown on demand."""
    name = PREFIX + "-hk"
    traces = {flag: subprocess.Popen([NSGRAPH, "trace", "--json", "--type", "net", "--duration", "120"] + list(flag),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for flag in ((), ("--housekeeping",))}
    try:
        for trace in traces.values():       # both tracing (the banner) before the run
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and "Tracing" not in (trace.stderr.readline() or "Tracing"):
                pass
        time.sleep(1.0)
        t0 = time.time()
        docker("run", "-d", "--name", name, service.test_image, "sleep", "300")
        init = json.loads(docker("inspect", name))[0]["State"]["Pid"]
        net = ns_inode(init, "net")               # ground truth: the container's net namespace
        graph = service.graph
        assert service.collector.sync(timeout=120)      # a busy host: every event so far applied
        assert wait_until(lambda: graph.namespace("net:%d" % net), timeout=30)
        net_id = graph.namespace("net:%d" % net)["id"]

        def engine_sessions():
            return [j for j in graph.to_json(include_housekeeping=True)["joins"]
                    if j["start"] >= t0 - 0.5 and j["target"].get("net") == net_id and j["housekeeping"]]
        found = wait_until(engine_sessions, timeout=30)
        assert found, "no housekeeping session into %s: %s" % (net_id, graph.to_json(include_housekeeping=True)["joins"])
        hk = found[0]
        assert (hk["comm"], hk["housekeeping"], hk["container"]) == ("dockerd", "engine", name), hk
        assert hk["summary"].startswith("housekeeping (engine): "), hk
        assert not [j for j in graph.to_json()["joins"] if j["id"] == hk["id"]]
        assert graph.join(hk["id"])["housekeeping"] == "engine"
        assert graph.counters_snapshot()["housekeeping_joins"] >= 1

        time.sleep(1.0)                 # the tracers' last poll
        outputs = {}
        for trace in traces.values():
            trace.send_signal(signal.SIGINT)        # ends like Ctrl-C: drain, then the summary line
        for flag, trace in traces.items():
            out, err = trace.communicate(timeout=120)
            into = [e for e in map(json.loads, out.splitlines())
                    if e["kind"] == "setns" and e["comm"] == "dockerd" and e["ns"].get("net") == net]
            outputs[flag] = (into, err)
        shown, _ = outputs[("--housekeeping",)]
        hidden, summary = outputs[()]
        assert shown and not hidden, outputs
        assert "container-engine housekeeping calls hidden (--housekeeping shows them)" in summary, summary
    finally:
        for trace in traces.values():
            if trace.poll() is None:
                trace.kill()
                trace.wait()
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
