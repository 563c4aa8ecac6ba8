"""The demo scenarios, run for real: Docker ones through the Docker SDK, util-linux ones as root.

Ground truth is the system: /proc/<pid>/ns of the host and of the containers
(State.Pid from docker inspect), docker inspect's HostConfig and labels.
The long-running container is named nsgtest-web-<random>-myapp, not `myapp`,
so these tests never touch a container someone else started.
"""

from __future__ import annotations

import os
import re
import time
import uuid

import pytest

from tracer.service import NsgraphService, ServiceConfig
from webapp import create_app
from webapp.config import WebConfig
from webapp.demos import EXPIRES_LABEL, LAUNCHER_LABEL, SCENARIOS, DemoManager, container_options
from web_fixtures import TOKEN, World, serving

NS_LINK = re.compile(r"(\w+) -> (\w+):\[(\d+)\]")
NS_READLINK = re.compile(r"^(\w+):\[(\d+)\]$", re.M)


def host_ns(ns_type: str, pid=None) -> int:
    """The inode of a namespace of pid (default: this test process, which runs in
    the host namespaces dockerd uses; /proc/1 may be unreadable in a sandbox)."""
    path = "/proc/%s/ns/%s" % ("self" if pid is None else pid, ns_type)
    return int(os.readlink(path).split("[")[1][:-1])


def listed_links(output: str) -> dict:
    """type -> inode from `ls -la /proc/self/ns/` output."""
    return {name: int(inode) for name, kind, inode in NS_LINK.findall(output) if name == kind}


def wait_run(manager: DemoManager, run_id: str, limit_s: float = 90) -> dict:
    deadline = time.time() + limit_s
    while time.time() < deadline:
        run = manager.run_json(run_id)
        if run["status"] not in ("queued", "running"):
            return run
        time.sleep(0.1)
    raise AssertionError("demo run %s did not finish in %d s: %r" % (run_id, limit_s, manager.run_json(run_id)))


@pytest.fixture(scope="module")
def manager(docker_client):
    name = "nsgtest-web-%s-myapp" % uuid.uuid4().hex[:6]
    cfg = WebConfig(token=TOKEN, max_concurrent_demos=4, demo_rate=100)
    m = DemoManager(cfg, myapp_name=name)
    yield m
    m.cleanup()
    m.stop()
    for c in docker_client.containers.list(all=True, filters={"label": "%s=%s" % (LAUNCHER_LABEL, m.instance)}):
        c.remove(force=True)


def run_ok(manager, scenario_id) -> dict:
    run = wait_run(manager, manager.launch(scenario_id).id)
    assert run["status"] == "succeeded", run
    assert run["exit_code"] == 0
    return run


def test_ls_ns_lists_new_namespaces(manager):
    run = run_ok(manager, "ls-ns")
    links = listed_links(run["output"])
    assert {"cgroup", "ipc", "mnt", "net", "pid", "uts"} <= set(links), run["output"]
    for t in ("ipc", "mnt", "net", "pid", "uts"):
        assert links[t] != host_ns(t), "%s namespace is the host's" % t
    assert links["user"] == host_ns("user")  # no user-namespace remapping by default
    assert run["command"].startswith("docker run --rm ") and run["command"].endswith("ls -la /proc/self/ns/")
    # What the launcher read from /proc while the container ran, when it was quick enough.
    for t, inode in run["observed_ns"].items():
        assert links.get(t) == inode


def test_hostname_ip_ps(manager):
    run = run_ok(manager, "hostname-ip-ps")
    lines = run["output"].splitlines()
    assert re.fullmatch(r"[0-9a-f]{12}", lines[0]), lines[0]   # Docker's default: the short id
    assert lines[0] != os.uname().nodename
    assert re.search(r"^\d+: lo[:@]", run["output"], re.M) and re.search(r"^\d+: eth0@", run["output"], re.M)
    pid1 = [ln for ln in lines if re.match(r"\s*1\s", ln)]
    assert pid1 and "sh -c" in pid1[0], run["output"]


def test_exec_myapp_lists_the_containers_processes_and_limits_apply(manager, docker_client):
    run = run_ok(manager, "exec-myapp")
    container = docker_client.containers.get(manager.myapp)
    attrs = container.attrs
    assert run["command"] == "docker exec %s ps aux" % manager.myapp
    cmd = " ".join(attrs["Config"]["Cmd"])
    rows = [ln for ln in run["output"].splitlines()[1:] if ln.strip()]
    assert re.match(r"\s*1\s", rows[0]) and rows[0].rstrip().endswith(cmd), run["output"]
    assert len(rows) == 2 and "ps aux" in rows[1]   # its own pid namespace: sleep and ps only
    # The namespaces it joined are myapp's (ground truth: /proc/<State.Pid>/ns).
    pid = attrs["State"]["Pid"]
    for t in ("ipc", "uts", "net", "pid", "mnt"):
        assert run["observed_ns"][t] == host_ns(t, pid)
    host = attrs["HostConfig"]
    assert host["Memory"] == 64 * 1024 * 1024
    assert host["PidsLimit"] == 64
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert host["ReadonlyRootfs"] is True
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["Privileged"] is False
    labels = attrs["Config"]["Labels"]
    assert labels[LAUNCHER_LABEL] == manager.instance
    assert float(labels[EXPIRES_LABEL]) > time.time()


def test_shared_net_uses_myapps_network_namespace(manager, docker_client):
    run = run_ok(manager, "shared-net")
    myapp = docker_client.containers.get(manager.myapp).attrs
    pid = myapp["State"]["Pid"]
    links = listed_links(run["output"])
    assert links["net"] == host_ns("net", pid)
    assert links["uts"] != host_ns("uts", pid) and links["pid"] != host_ns("pid", pid)
    ip = myapp["NetworkSettings"]["IPAddress"] or next(
        iter(myapp["NetworkSettings"]["Networks"].values()))["IPAddress"]
    assert ip and ("inet %s/" % ip) in run["output"]


def test_host_pid_sees_the_hosts_processes(manager):
    run = run_ok(manager, "host-pid")
    links = listed_links(run["output"])
    assert links["pid"] == host_ns("pid")
    assert links["net"] != host_ns("net")
    pids = {int(m) for m in re.findall(r"^\s*(\d+)\s", run["output"], re.M)}
    assert os.getpid() in pids


def test_every_docker_scenario_gets_the_limits():
    for scenario in SCENARIOS.values():
        if scenario.kind != "docker":
            continue
        opts = container_options(scenario, instance="i", run_id="r", expires=1.0, myapp_container="c")
        assert opts["mem_limit"] == "64m" and opts["pids_limit"] == 64
        assert opts["cap_drop"] == ["ALL"] and "cap_add" not in opts
        assert opts["read_only"] is True and "privileged" not in opts
        assert opts["labels"][LAUNCHER_LABEL] == "i"
        assert not any(k in opts for k in ("volumes", "mounts", "devices", "command", "image"))


def test_through_http_launch_poll_and_cleanup(docker_client):
    name = "nsgtest-web-%s-myapp" % uuid.uuid4().hex[:6]
    cfg = WebConfig(token=TOKEN)
    demos = DemoManager(cfg, myapp_name=name)
    app = create_app(cfg, service=serving(World()), demos=demos)
    client = app.test_client()
    client.get("/?token=" + TOKEN)
    same = {"Sec-Fetch-Site": "same-origin"}
    try:
        r = client.post("/api/demos/exec-myapp", headers=same, json={})
        assert r.status_code == 202
        run_id = r.get_json()["run_id"]
        run = wait_run(demos, run_id)
        body = client.get("/api/demos/runs/" + run_id).get_json()
        assert body["status"] == "succeeded" and body["output"] == run["output"]
        assert {"command", "output", "status", "started", "ended", "namespaces"} <= set(body)
        assert docker_client.containers.get(name).status == "running"
        r = client.post("/api/demos/cleanup", headers=same)
        assert r.status_code == 200 and name in r.get_json()["removed"]
        left = docker_client.containers.list(all=True, filters={"label": "%s=%s" % (LAUNCHER_LABEL, demos.instance)})
        assert left == []
        assert "nsgraph_demos_started_total 1" in client.get("/metrics").data.decode()
    finally:
        demos.stop()
        for c in docker_client.containers.list(all=True, filters={"label": "%s=%s" % (LAUNCHER_LABEL, demos.instance)}):
            c.remove(force=True)


def test_expired_demo_containers_are_reaped_by_any_instance(docker_client):
    name = "nsgtest-web-%s-myapp" % uuid.uuid4().hex[:6]
    short = DemoManager(WebConfig(token=TOKEN, demo_ttl_s=1), myapp_name=name)
    other = DemoManager(WebConfig(token=TOKEN))
    try:
        run_ok(short, "exec-myapp")
        assert docker_client.containers.get(name).status == "running"
        time.sleep(1.5)
        result = other.cleanup(expired_only=True)
        assert name in result["removed"]
        assert not docker_client.containers.list(all=True, filters={"name": "^/%s$" % name})
    finally:
        short.stop()
        other.stop()
        for c in docker_client.containers.list(all=True, filters={"name": "^/%s$" % name}):
            c.remove(force=True)


def test_a_foreign_container_named_like_myapp_is_left_alone(docker_client, manager):
    from webapp.demos.image import ensure_demo_image
    name = "nsgtest-web-%s-foreign" % uuid.uuid4().hex[:6]
    foreign = docker_client.containers.run(ensure_demo_image(docker_client), ["sleep", "60"], name=name,
                                           detach=True)
    try:
        m = DemoManager(WebConfig(token=TOKEN), myapp_name=name)
        run = wait_run(m, m.launch("exec-myapp").id)
        assert run["status"] == "failed" and "not started by the demo launcher" in run["error"]
        m.cleanup()
        foreign.reload()
        assert foreign.status == "running"
        m.stop()
    finally:
        foreign.remove(force=True)


# -- util-linux (root, no Docker) ----------------------------------------------------------------------

def test_unshare_then_nsenter_join(root):
    m = DemoManager(WebConfig(token=TOKEN))
    try:
        run = run_ok(m, "unshare-uts-net-pid")
        assert "nsgraph-uts-demo" in run["output"]
        created = {t: int(i) for t, i in NS_READLINK.findall(run["output"])}
        assert set(created) == {"uts", "net", "pid"}
        for t, inode in created.items():
            assert inode != host_ns(t)
        child = run["pids"][-1]
        assert {t: host_ns(t, child) for t in created} == created  # the sleeper lives in them
        join = run_ok(m, "nsenter-join")
        assert join["command"].startswith("nsenter --target %d " % child)
        assert "nsgraph-uts-demo" in join["output"]
        assert {t: int(i) for t, i in NS_READLINK.findall(join["output"])} == created
        assert m.stats()["sleepers"] == 1
        m.cleanup()
        assert m.stats()["sleepers"] == 0
        assert not os.path.exists("/proc/%d" % child) or open("/proc/%d/stat" % child).read().split()[2] == "Z"
    finally:
        m.stop()


# -- with the real tracer service: the namespaces a run created or joined ------------------------------

def _wait_ns(demos, run_id, predicate, limit_s=10.0):
    deadline = time.time() + limit_s
    run = demos.run_json(run_id)
    while time.time() < deadline:
        run = demos.run_json(run_id)
        if predicate(run):
            return run
        time.sleep(0.2)
    return run


def test_real_service_highlights_created_and_joined_namespaces(root, docker_client, tmp_path):
    # Never the machine-wide default history database: other runs share it.
    service = NsgraphService(ServiceConfig(db=str(tmp_path / "history.db")))
    name = "nsgtest-web-%s-myapp" % uuid.uuid4().hex[:6]
    cfg = WebConfig(token=TOKEN)
    demos = DemoManager(cfg, myapp_name=name)
    app = create_app(cfg, service=service, demos=demos)
    state = app.extensions["nsgraph"]
    try:
        assert service.start(lambda m: None), service.status.to_json()
        state.start()

        def created_nets(r) -> set:
            """Inodes of the net namespaces the run says it created, as the graph knows them."""
            ids = {n["id"]: n for n in state.graph_json()["namespaces"]}
            return {ids[i]["inode"] for i in r["namespaces"]["created"] if i in ids and ids[i]["type"] == "net"}

        run = run_ok(demos, "ls-ns")
        net_inode = listed_links(run["output"])["net"]
        run = _wait_ns(demos, run["id"], lambda r: net_inode in created_nets(r))
        assert created_nets(run) == {net_inode}, run["namespaces"]

        # Two demos at once: each is credited with its own namespaces only (ground
        # truth: the inode each container printed of its own /proc/self/ns/net).
        first, second = demos.launch("ls-ns"), demos.launch("ls-ns")
        runs = [wait_run(demos, first.id), wait_run(demos, second.id)]
        nets = [listed_links(r["output"])["net"] for r in runs]
        assert nets[0] != nets[1]
        runs = [_wait_ns(demos, r["id"], lambda x, n=n: n in created_nets(x)) for r, n in zip(runs, nets)]
        assert [created_nets(r) for r in runs] == [{nets[0]}, {nets[1]}], [r["namespaces"] for r in runs]

        run = run_ok(demos, "exec-myapp")
        pid = docker_client.containers.get(name).attrs["State"]["Pid"]
        want = {t: host_ns(t, pid) for t in ("ipc", "uts", "net", "pid", "mnt")}

        def joined_all(r):
            graph = state.graph_json()
            ids = {n["id"]: n for n in graph["namespaces"]}
            got = {ids[i]["type"]: ids[i]["inode"] for i in r["namespaces"]["joined"] if i in ids}
            return all(got.get(t) == inode for t, inode in want.items())
        run = _wait_ns(demos, run["id"], joined_all)
        assert joined_all(run), run["namespaces"]
        # The join session is the run's by the exec'd command's pid (docker exec inspect).
        graph = state.graph_json()
        sessions = [j for j in graph["joins"] if j["id"] in run["joins"]]
        assert len(sessions) == 1 and sessions[0]["exec_pid"] in run["pids"], (run["joins"], run["pids"])
        assert {t: sessions[0]["target"][t] for t in want} == {
            t: next(n["id"] for n in graph["namespaces"] if n["type"] == t and n["inode"] == inode and n["alive"])
            for t, inode in want.items()}
    finally:
        state.stop()
        demos.cleanup()
        service.stop()
