"""Catalogs (tracer/containers/engines.py): each container goes to the engine its cgroup names."""

from __future__ import annotations

import docker

from tracer.containers.catalog import ContainerCatalog
from tracer.containers.engines import Catalogs
from tracer.containers.cgroups import DOCKER, PODMAN

ID_D = "d" * 64
ID_P = "a1" * 32


def _nowhere():
    return docker.DockerClient(base_url="unix:///nonexistent/nsgraph-test/engine.sock", timeout=2)


def test_each_cgroup_goes_to_its_engine_and_a_missing_podman_says_how_to_start_it(monkeypatch):
    monkeypatch.setenv("NSGRAPH_PODMAN_SOCKET", "unix:///nonexistent/nsgraph-test/podman.sock")
    docker_cat = ContainerCatalog(client_factory=_nowhere, backoff=(0.05, 0.2))
    podman_cat = ContainerCatalog(client_factory=_nowhere, backoff=(0.05, 0.2), engine=PODMAN)
    with Catalogs([docker_cat, podman_cat]) as catalogs:
        assert not catalogs.connected and not catalogs.any_connected()
        # Health speaks of Docker; podman's own text names the socket and the command.
        assert "start dockerd" in catalogs.status
        podman_status = catalogs.engines()[PODMAN]
        assert "podman system service --time=0 unix:///nonexistent/nsgraph-test/podman.sock" in podman_status
        pod = catalogs.resolve(1, "0::/machine.slice/libpod-%s.scope" % ID_P)
        dock = catalogs.resolve(1, "0::/system.slice/docker-%s.scope" % ID_D)
        assert (pod.runtime, pod.name, pod.source) == (PODMAN, ID_P[:12], "cgroup")
        assert (dock.runtime, dock.source) == (DOCKER, "cgroup")
        # cgroupfs layout (podman without systemd): /libpod_parent/libpod-<id>
        assert catalogs.resolve(1, "12:pids:/libpod_parent/libpod-%s" % ID_P).runtime == PODMAN
        assert catalogs.by_name("x") is None and catalogs.containers() == []
        assert catalogs.counters["lookups"] == 0
    assert docker_cat.status == podman_cat.status == "closed"


def test_an_unknown_engine_is_refused():
    try:
        ContainerCatalog(engine="rkt")
    except ValueError as exc:
        assert "rkt" in str(exc)
    else:
        raise AssertionError("engine='rkt' was accepted")
