"""Podman containers (issue 10 item 5): names, images, labels, state, start/die events from
podman's Docker-API socket, pruning on removal, and `trace --container NAME`.
Ground truth: `podman inspect` and /proc/<init pid>/ns."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

import pytest

from conftest import require, stderr_until_banner, wait_until
from workloads.podman_env import PodmanService, load_image, podman, podman_available, podman_run

PREFIX = "nsgtest-podman-%s" % uuid.uuid4().hex[:8]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NSGRAPH = os.path.join(REPO, ".venv", "bin", "nsgraph")


@pytest.fixture(scope="module")
def podman_env(root, docker_client, tmp_path_factory):
    require(podman_available(), "podman is not installed (apt-get install podman; scripts/setup.sh test does)")
    from webapp.demos.image import ensure_demo_image
    image = load_image(ensure_demo_image(docker_client))
    service = PodmanService(str(tmp_path_factory.mktemp("podman")))
    old = os.environ.get("NSGRAPH_PODMAN_SOCKET")
    os.environ["NSGRAPH_PODMAN_SOCKET"] = service.socket
    try:
        yield image, service.socket
    finally:
        if old is None:
            os.environ.pop("NSGRAPH_PODMAN_SOCKET", None)
        else:
            os.environ["NSGRAPH_PODMAN_SOCKET"] = old
        for line in podman("ps", "-a", "--format", "{{.Names}}", check=False).splitlines():
            if line.startswith(PREFIX):
                podman("rm", "-f", line, check=False)
        service.close()


@pytest.fixture(scope="module")
def service(podman_env):
    from tracer.service import NsgraphService, ServiceConfig
    svc = NsgraphService(ServiceConfig(db="none", reconcile_s=3600))
    assert svc.start(), svc.status.error
    yield svc
    svc.stop()


def test_podman_containers_have_names_images_labels_state_and_are_pruned(podman_env, service):
    image, _socket = podman_env
    engines = service.catalog.engines()
    assert engines.get("podman", "").startswith("connected to podman"), engines
    name = PREFIX + "-web"
    cid = podman_run("--name", name, "--label", "org.nsgraph.test=podman", "--network", "none",
                     image, "sleep", "300")
    truth = json.loads(podman("inspect", cid))[0]
    init = truth["State"]["Pid"]
    net = os.stat("/proc/%d/ns/net" % init).st_ino
    graph = service.graph

    def shown():
        c = graph.container(name)
        return c if c is not None and c["container"]["state"] == "running" else None
    detail = wait_until(shown, timeout=15)
    assert detail, "podman container %s not shown by name: %s" % (name, graph.container(cid[:12]))
    c = detail["container"]
    assert (c["id"], c["name"], c["runtime"], c["pid"]) == (truth["Id"], name, "podman", init)
    assert c["labels"].get("org.nsgraph.test") == "podman"
    assert c["image"] in (truth["ImageName"], truth["Config"]["Image"]), (c["image"], truth["ImageName"])
    ns = graph.namespace("net:%d" % net)
    assert ns is not None and ns["container_id"] == truth["Id"] and ns["container"] == name, ns

    podman("stop", "-t", "0", name)
    died = wait_until(lambda: (graph.container(name) or {}).get("container", {}).get("state") == "exited",
                      timeout=15)
    assert died, "stopped podman container still %s" % (graph.container(name) or {}).get("container")
    podman("rm", name)
    gone = wait_until(lambda: not any(x["id"] == truth["Id"] for x in graph.to_json()["containers"]),
                      timeout=15)
    assert gone, "removed podman container %s is still listed" % name


def test_trace_container_filters_podman_containers_by_name(podman_env, service):
    image, socket = podman_env
    name = PREFIX + "-trace"
    podman_run("--name", name, "--network", "none", image, "sleep", "300")
    try:
        init = json.loads(podman("inspect", name))[0]["State"]["Pid"]
        net = os.stat("/proc/%d/ns/net" % init).st_ino
        env = dict(os.environ, NSGRAPH_PODMAN_SOCKET=socket)
        trace = subprocess.Popen([NSGRAPH, "trace", "--json", "--container", name, "--duration", "25"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            errors = stderr_until_banner(trace)
            time.sleep(1.0)
            podman("exec", name, "true")
            out, rest = trace.communicate(timeout=90)
        finally:
            if trace.poll() is None:
                trace.kill()
        stderr = "".join(errors) + rest
        assert "no container matches" not in stderr, stderr
        events = [json.loads(line) for line in out.splitlines()]
        setns = [e for e in events if e["kind"] == "setns" and e["ret"] == 0]
        assert any(e["ns"].get("net") == net for e in setns), \
            "no setns into %s's net namespace shown: %s" % (name, events[:20])
        for e in events:
            assert name in (e.get("container"), e.get("target_container")), e
    finally:
        podman("rm", "-f", name, check=False)


def test_without_the_socket_the_podman_command_names_containers(podman_env):
    """podman's service is off by default: the `podman` command answers instead."""
    from tracer.containers.catalog import ContainerCatalog
    from tracer.containers.podman_cli import PodmanCli
    image, _socket = podman_env
    name = PREFIX + "-cli"
    with ContainerCatalog(engine="podman", client_factory=PodmanCli) as catalog:
        assert catalog.connected and "podman command" in catalog.status, catalog.status
        cid = podman_run("--name", name, "--label", "org.nsgraph.test=cli", "--network", "none", image,
                         "sleep", "300")
        truth = json.loads(podman("inspect", cid))[0]
        c = wait_until(lambda: catalog.by_name(name), timeout=20)
        assert c is not None and (c.id, c.pid, c.state, c.source) == (truth["Id"], truth["State"]["Pid"],
                                                                      "running", "podman"), c
        assert c.labels.get("org.nsgraph.test") == "cli"
        podman("rm", "-f", "-t", "0", name)
        assert wait_until(lambda: catalog.by_name(name) is None, timeout=20), catalog.by_name(name)
