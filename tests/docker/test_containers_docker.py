"""ContainerCatalog against the real Docker engine.

Ground truth comes from `docker inspect` (State.Pid, Id, Name), the `docker` CLI
(`docker ps` columns) and /proc/<pid>/cgroup, never from the catalog itself.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import threading
import time
import uuid

import pytest

from tracer.containers import catalog as C
from tracer.containers.cgroups import DOCKER
from webapp.demos import image as demoimage


WAIT = 15.0  # generous: two shared cores; the events normally arrive in milliseconds


@pytest.fixture(scope="module")
def image(docker_client):
    return demoimage.ensure_demo_image(docker_client)


@pytest.fixture
def made(docker_client):
    """Containers this test created; removed at the end whatever happens."""
    created = []
    yield created
    for c in created:
        try:
            c.remove(force=True)
        except Exception:
            pass


def unique(tag: str) -> str:
    return "nsgtest-containers-%s-%s" % (tag, uuid.uuid4().hex[:8])


class Recorder:
    """Collects (action, container) notifications and waits for a specific one."""

    def __init__(self):
        self.items = []
        self.cond = threading.Condition()

    def __call__(self, action, container):
        with self.cond:
            self.items.append((action, container))
            self.cond.notify_all()

    def wait_for(self, action, cid, timeout=WAIT):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for a, c in self.items:
                    if a == action and c.id == cid:
                        return c
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("no %r for %s within %.0f s; got %r" % (
                        action, cid[:12], timeout, [(a, c.name) for a, c in self.items]))
                self.cond.wait(left)


def docker_ps_row(name: str) -> tuple[str, str, str]:
    """(id, names, image) as the docker CLI prints them."""
    out = subprocess.run(["docker", "ps", "-a", "--no-trunc", "--filter", "name=^/%s$" % name,
                          "--format", "{{.ID}}\t{{.Names}}\t{{.Image}}"],
                         capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    assert out, "docker ps does not list %s" % name
    return tuple(out.split("\t"))


def host_pids_of(container, argv_tail: str) -> list[int]:
    """Host pids (from `docker top`) of the container's processes whose command ends with argv_tail."""
    top = container.top(ps_args="-eo pid,args")
    titles = top["Titles"]
    pid_i, args_i = titles.index("PID"), titles.index("COMMAND")
    return [int(row[pid_i]) for row in top["Processes"] if row[args_i].endswith(argv_tail)]


def test_container_start_resolve_exec_die_destroy(docker_client, image, made):
    rec = Recorder()
    with C.ContainerCatalog(docker_client) as catalog:
        assert catalog.connected, catalog.status
        assert catalog.status.startswith("connected to Docker")
        catalog.subscribe(rec)
        name = unique("life")
        c = docker_client.containers.run(image, ["sleep", "300"], name=name, detach=True,
                                         labels={"nsgtest": "containers"})
        made.append(c)
        rec.wait_for("start", c.id)

        inspect = docker_client.api.inspect_container(c.id)
        init_pid = inspect["State"]["Pid"]
        assert init_pid > 0
        cgroup_text = open("/proc/%d/cgroup" % init_pid).read()
        ps_id, ps_names, ps_image = docker_ps_row(name)

        for got in (catalog.resolve(init_pid), catalog.resolve(init_pid, cgroup_text)):
            assert got is not None, cgroup_text
            assert got.id == inspect["Id"] == ps_id
            assert got.name == inspect["Name"].lstrip("/") == ps_names == name
            assert got.image == ps_image
            assert got.pid == init_pid and got.state == "running" and got.runtime == DOCKER
            assert got.labels.get("nsgtest") == "containers"
            assert got.source == "docker"
        assert catalog.by_name(name).id == c.id
        assert catalog.by_name("/" + name).id == c.id
        assert catalog.by_id(c.id[:12]).name == name

        # a process that `docker exec` started inside it
        marker = str(1000 + int(uuid.uuid4().hex[:4], 16))
        docker_client.api.exec_start(docker_client.api.exec_create(c.id, ["sleep", marker]), detach=True)
        deadline = time.monotonic() + WAIT
        while not host_pids_of(c, "sleep " + marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        exec_pids = host_pids_of(c, "sleep " + marker)
        assert len(exec_pids) == 1, "docker top did not show the exec'd process"
        assert exec_pids[0] != init_pid
        got = catalog.resolve(exec_pids[0])
        assert got is not None and got.id == c.id and got.name == name

        c.kill()
        died = rec.wait_for("die", c.id)
        assert died.state == "exited" and died.pid is None
        assert catalog.by_name(name).state == "exited"
        c.remove()
        rec.wait_for("destroy", c.id)
        assert catalog.by_name(name) is None and catalog.by_id(c.id) is None
    assert catalog.status == "closed"
    assert not catalog._thread.is_alive(), "the event thread did not stop when the stream was closed"


def test_rename_is_followed(docker_client, image, made):
    rec = Recorder()
    with C.ContainerCatalog(docker_client) as catalog:
        catalog.subscribe(rec)
        old, new = unique("old"), unique("new")
        c = docker_client.containers.run(image, ["sleep", "300"], name=old, detach=True)
        made.append(c)
        rec.wait_for("start", c.id)
        c.rename(new)
        renamed = rec.wait_for("rename", c.id)
        assert renamed.name == new == docker_ps_row(new)[1]
        assert catalog.by_name(new).id == c.id and catalog.by_name(old) is None


def test_containers_existing_before_start_are_listed(docker_client, image, made):
    name = unique("pre")
    c = docker_client.containers.run(image, ["sleep", "300"], name=name, detach=True)
    made.append(c)
    with C.ContainerCatalog(docker_client) as catalog:
        got = catalog.by_name(name)
        assert got is not None and got.id == c.id
        assert got.pid == docker_client.api.inspect_container(c.id)["State"]["Pid"]


def test_unknown_id_is_looked_up_at_most_once_per_interval(docker_client):
    with C.ContainerCatalog(docker_client, lookup_interval=60) as catalog:
        ghost = uuid.uuid4().hex + uuid.uuid4().hex  # 64 hex digits no container has
        line = "0::/docker/" + ghost
        before = catalog.counters["lookups"]
        for _ in range(50):
            got = catalog.resolve(1, line)
            assert got is not None and got.id == ghost and got.source == "cgroup"
        assert catalog.counters["lookups"] - before == 1
        # runtimes Docker cannot know about are never asked for
        catalog.resolve(1, "0::/machine.slice/libpod-%s.scope" % ghost)
        assert catalog.counters["lookups"] - before == 1


def test_subscriber_error_does_not_stop_the_watcher(docker_client, image, made):
    rec = Recorder()
    with C.ContainerCatalog(docker_client) as catalog:
        catalog.subscribe(lambda a, c: 1 / 0)
        catalog.subscribe(rec)
        c = docker_client.containers.run(image, ["sleep", "300"], name=unique("cb"), detach=True)
        made.append(c)
        rec.wait_for("start", c.id)
        assert catalog.counters["callback_errors"] >= 1
        assert catalog._thread.is_alive()


class SocketRelay:
    """A unix-socket relay in front of dockerd: stopping it looks like a dockerd restart to a
    client, without disturbing the engine that other people's tests use."""

    def __init__(self, target="/var/run/docker.sock"):
        self.target = target
        self.path = os.path.join(tempfile.mkdtemp(prefix="nsgtest-containers-"), "docker.sock")
        self.listener = None
        self.conns = []
        self.lock = threading.Lock()

    def start(self):
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(16)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def stop(self):
        self.listener.close()
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        os.unlink(self.path)

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.target)
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def test_reconnects_and_resyncs_after_engine_outage(docker_client, image, made):
    import docker
    relay = SocketRelay()
    relay.start()
    rec = Recorder()

    def factory():
        return docker.DockerClient(base_url="unix://" + relay.path, timeout=10)

    catalog = C.ContainerCatalog(client_factory=factory, backoff=(0.1, 0.5)).start()
    try:
        assert catalog.connected, catalog.status
        catalog.subscribe(rec)
        before = docker_client.containers.run(image, ["sleep", "300"], name=unique("pre"), detach=True)
        made.append(before)
        rec.wait_for("start", before.id)

        relay.stop()  # the "engine" goes away
        deadline = time.monotonic() + WAIT
        while catalog.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not catalog.connected
        deadline = time.monotonic() + WAIT
        while "start dockerd" not in catalog.status and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "start dockerd" in catalog.status
        # cached attribution keeps working during the outage
        assert catalog.by_name(before.name).id == before.id

        # changes while disconnected: one container appears, one goes away
        during = docker_client.containers.run(image, ["sleep", "300"], name=unique("during"), detach=True)
        made.append(during)
        before.remove(force=True)

        relay.start()  # the "engine" is back
        rec.wait_for("start", during.id)
        rec.wait_for("destroy", before.id)
        assert catalog.connected and catalog.status.startswith("connected")
        assert catalog.by_name(during.name).id == during.id
        assert catalog.by_name(before.name) is None
        assert catalog.counters["reconnects"] >= 1
    finally:
        catalog.close()
        try:
            relay.stop()
        except OSError:
            pass
    assert not catalog._thread.is_alive()
