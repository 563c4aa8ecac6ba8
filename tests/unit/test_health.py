"""Health that tells the truth (issue 11): /api/status and /metrics on the real app and service.

Each degraded state is produced for real: the process's own descriptor limit lowered
and descriptors opened, a Docker client pointed at a socket nobody listens on, lost
events reported the way the collector reports them, a maintenance step that raised.
"""

from __future__ import annotations

import os
import resource

import docker
import pytest

from tracer.containers.catalog import ContainerCatalog
from tracer.health import Health
from web_fixtures import World, authed, serving


def _status(client) -> dict:
    response = client.get("/api/status")
    assert response.status_code == 200
    return response.get_json()


def _degraded_metric(client, check: str) -> str:
    text = client.get("/metrics").get_data(as_text=True)
    line = [l for l in text.splitlines() if l.startswith('nsgraph_degraded{check="%s"}' % check)]
    assert len(line) == 1, text
    return line[0].split()[-1]


def test_a_healthy_service_is_not_degraded():
    _app, client = authed(serving(World()))
    status = _status(client)
    assert status["state"] == "running" and status["degraded"] is False and status["health"] == []
    assert _degraded_metric(client, "descriptors") == "0"


@pytest.fixture
def low_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held = []
    yield held
    for fd in held:
        os.close(fd)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_descriptor_pressure_is_reported_with_the_fix(low_fd_limit):
    _app, client = authed(serving(World()))
    in_use = len(os.listdir("/proc/self/fd"))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + 50, hard))
    while len(os.listdir("/proc/self/fd")) < 0.85 * (in_use + 50):
        low_fd_limit.append(os.open("/dev/null", os.O_RDONLY))
    status = _status(client)
    assert status["degraded"] is True
    messages = [h["message"] for h in status["health"] if h["check"] == "descriptors"]
    assert len(messages) == 1 and "LimitNOFILE=" in messages[0] and "of %d file descriptors" % (in_use + 50) \
        in messages[0]
    assert messages[0] in status["warnings"]
    assert _degraded_metric(client, "descriptors") == "1"


def test_docker_unreachable_is_reported_while_it_lasts(tmp_path):
    service = serving(World())
    dead = "unix://" + str(tmp_path / "no-docker.sock")
    catalog = ContainerCatalog(client_factory=lambda: docker.DockerClient(base_url=dead, timeout=2),
                               backoff=(5.0, 5.0)).start(wait=5.0)
    service.catalog = catalog
    try:
        _app, client = authed(service)
        status = _status(client)
        messages = [h["message"] for h in status["health"] if h["check"] == "docker"]
        assert len(messages) == 1 and messages[0].startswith("Docker is unreachable") and "demos" in messages[0]
        assert _degraded_metric(client, "docker") == "1"
    finally:
        catalog.close()


def test_lost_events_count_for_a_minute():
    world = World()
    _app, client = authed(serving(world))
    assert _status(client)["degraded"] is False          # the window's first sample: nothing lost
    world.graph.on_lost(37)
    status = _status(client)
    messages = [h["message"] for h in status["health"] if h["check"] == "lost_events"]
    assert len(messages) == 1 and messages[0].startswith("37 events lost in the last minute")
    assert _degraded_metric(client, "lost_events") == "1"


def test_a_failing_reconcile_is_reported_until_it_succeeds_again():
    health = Health(serving(World()))
    health.maintenance_failed(OSError(24, "Too many open files"))
    problems = health.check()
    assert [p["check"] for p in problems] == ["reconcile"]
    assert "Too many open files" in problems[0]["message"] and "failing since" in problems[0]["message"]
    health.maintenance_ok()
    assert health.check() == []


def test_metrics_show_the_history_queue_and_python_allocations(tmp_path):
    from tracer.history.store import HistoryStore
    world = World()
    store = HistoryStore(str(tmp_path / "history.db")).open()
    store.attach(world.graph)         # not started: what the graph journals stays queued
    try:
        _app, client = authed(serving(world, store))
        world.graph.apply_batch([world.event("exit", 50, exit_code=0)])
        values = {}
        for line in client.get("/metrics").get_data(as_text=True).splitlines():
            if line.startswith(("nsgraph_history_", "nsgraph_python_")):
                name, value = line.split()
                values[name] = float(value)
        assert values["nsgraph_history_queued_inputs"] == store.stats()["queued"] >= 1
        assert values["nsgraph_history_dropped_inputs_total"] == 0
        assert values["nsgraph_python_allocated_blocks"] > 10_000
    finally:
        store.close()
