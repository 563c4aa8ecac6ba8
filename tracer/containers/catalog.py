"""ContainerCatalog: the containers the Docker engine knows, kept current by its event stream.

When the Docker engine is reachable, the catalog adds the names (as `docker ps`
shows them), images, labels, state and init pid to what cgroup paths tell
(cgroups.py), and an event-stream thread keeps them current.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Callable, Optional

from .cgroups import BARE_ID, CRI, DOCKER, PODMAN, UNKNOWN, ContainerRef, parse_cgroup, read_cgroup
from .docker_client import docker_client, podman_client, podman_socket
from .records import Container, container_from_inspect, container_from_ref, find_container

log = logging.getLogger(__name__)

# Runtimes whose containers the Docker engine may know (Kubernetes on dockershim/cri-dockerd
# runs them through Docker; custom --cgroup-parent paths give UNKNOWN).
_DOCKER_LOOKUP_RUNTIMES = frozenset({DOCKER, CRI, UNKNOWN})
# Which runtimes each engine's catalog looks up (podman's containers: libpod-<id> cgroups).
_LOOKUP_RUNTIMES = {DOCKER: _DOCKER_LOOKUP_RUNTIMES, PODMAN: frozenset({PODMAN})}
# Podman's event names where they differ from Docker's (podman 4 sends its own through the
# Docker API: "died" for "die", "remove" for "destroy"); "init" fills in the details early.
_ACTION_ALIASES = {"died": "die", "remove": "destroy", "init": "update"}

def _unavailable_hint(engine: str, exc: BaseException) -> str:
    if engine == PODMAN:
        return ("podman's API socket %s does not answer (%s); podman containers are named by id "
                "only; start it: `podman system service --time=0 unix://%s &` (or `systemctl enable "
                "--now podman.socket`), or set NSGRAPH_PODMAN_SOCKET" % (
                    podman_socket(), _short_error(exc), podman_socket()))
    return ("Docker engine not reachable (%s); container names, images and labels are "
            "unavailable and attribution uses cgroup paths only; start dockerd: "
            "(`dockerd >/var/log/dockerd.log 2>&1 &`) or set DOCKER_HOST" % _short_error(exc))


def _short_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


Callback = Callable[[str, Container], None]


class ContainerCatalog:
    """Containers known to one engine (Docker, or podman through its Docker-API socket),
    kept current by its event stream.

    resolve() never blocks on Docker for a container already seen; an unknown id
    is looked up at most once per `lookup_interval` seconds.  Without a reachable
    engine everything still works from cgroup paths, and `status` says why.
    Subscribers get (action, container) with action in create/start/update/die/
    destroy/rename, called from the watcher thread.
    """

    # "die" and "destroy" are handled from the event alone; exec_*, attach, resize... change nothing.
    _INSPECT_ACTIONS = frozenset({"create", "start", "restart", "rename", "pause", "unpause", "update"})

    def __init__(self, client=None, *, client_factory: Optional[Callable[[], object]] = None,
                 lookup_interval: float = 5.0, backoff: tuple = (0.5, 30.0), engine: str = DOCKER):
        if client is not None and client_factory is not None:
            raise ValueError("pass client or client_factory, not both")
        if engine not in _LOOKUP_RUNTIMES:
            raise ValueError("engine %r: one of %s" % (engine, ", ".join(sorted(_LOOKUP_RUNTIMES))))
        self.engine = engine
        self._runtimes = _LOOKUP_RUNTIMES[engine]
        self._own_client = client is None
        default_factory = podman_client if engine == PODMAN else docker_client
        self._factory = client_factory or ((lambda: client) if client is not None else default_factory)
        self.lookup_interval = lookup_interval
        self._backoff = backoff
        self._lock = threading.RLock()
        self._by_id: dict[str, Container] = {}
        self._looked_up: dict[str, float] = {}
        self._destroyed: dict[str, None] = {}   # insertion-ordered set of recently destroyed ids
        self._subscribers: list[Callback] = []
        self._client = None
        self._stream = None
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._first_attempt = threading.Event()
        self._status = "not started"
        self.connected = False
        self.counters = {"events": 0, "lookups": 0, "reconnects": 0, "callback_errors": 0,
                         "lookup_errors": 0}

    # -- lifecycle --

    def start(self, wait: float = 5.0) -> "ContainerCatalog":
        """Start the watcher; wait up to `wait` s for the first connection attempt."""
        if self._thread is None:
            self._status = "starting"
            self._thread = threading.Thread(target=self._run, name="nsgraph-docker-events", daemon=True)
            self._thread.start()
        self._first_attempt.wait(wait)
        return self

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._close_stream()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            client, self._client = self._client, None
        if client is not None and self._own_client:
            try:
                client.close()
            except Exception:
                pass
        self.connected = False
        self._status = "closed"

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    @property
    def status(self) -> str:
        return self._status

    # -- queries --

    def resolve(self, pid: int, cgroup=None) -> Optional[Container]:
        """The container of process `pid`, from `cgroup` (a line/file/path) or /proc/<pid>/cgroup."""
        ref = parse_cgroup(cgroup) if cgroup is not None else parse_cgroup(read_cgroup(pid))
        if ref is None:
            return None
        return self.resolve_ref(ref)

    def resolve_ref(self, ref: ContainerRef) -> Container:
        for candidate in (ref,) + tuple(reversed(ref.outer)):
            found = self._lookup(candidate)
            if found is not None:
                return found
        return container_from_ref(ref)

    def by_name(self, name: str) -> Optional[Container]:
        """The container with this name (as `docker ps` shows it; a leading "/" is ignored)."""
        with self._lock:
            return find_container(name, self._by_id.values(), key=lambda c: (c.name, None))

    def by_id(self, id_or_prefix: str) -> Optional[Container]:
        """The container with this id, or the only one whose id starts with this prefix
        (records.MIN_ID_PREFIX characters or more)."""
        with self._lock:
            found = self._by_id.get(id_or_prefix)
            if found is not None:
                return found
            return find_container(id_or_prefix, self._by_id.values(), key=lambda c: (None, c.id))

    def containers(self) -> list[Container]:
        with self._lock:
            return sorted(self._by_id.values(), key=lambda c: c.name)

    def subscribe(self, callback: Callback) -> Callable[[], None]:
        """Call `callback(action, container)` on changes; returns an unsubscribe function."""
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)
        return unsubscribe

    # -- internals --

    def _lookup(self, ref: ContainerRef) -> Optional[Container]:
        with self._lock:
            found = self._by_id.get(ref.id)
            if found is not None or ref.runtime not in self._runtimes:
                return found
            client = self._client if self.connected else None
            now = time.monotonic()
            last = self._looked_up.get(ref.id)
            if client is None or (last is not None and now - last < self.lookup_interval):
                return None
            self._looked_up[ref.id] = now
            if len(self._looked_up) > 10000:  # ids of long-gone processes
                cutoff = now - self.lookup_interval
                self._looked_up = {k: v for k, v in self._looked_up.items() if v >= cutoff}
        container = self._fetch(client, ref.id, runtime=ref.runtime if ref.runtime != UNKNOWN else self.engine,
                                pod_uid=ref.pod_uid)
        if container is None:
            return None
        with self._lock:
            # The watcher may have seen it destroyed while we asked; do not resurrect it.
            if container.id in self._destroyed:
                return container
        self._store("update", container)
        return container

    def _fetch(self, client, cid: str, runtime: Optional[str] = None, pod_uid=None) -> Optional[Container]:
        import docker.errors
        self.counters["lookups"] += 1
        try:
            attrs = client.api.inspect_container(cid)
            listed = client.api.containers(all=True, filters={"id": attrs["Id"]})
        except docker.errors.NotFound:
            return None
        except Exception as exc:
            self.counters["lookup_errors"] += 1
            log.debug("docker lookup of %s failed: %s", cid, exc)
            return None
        row = next((r for r in listed if r.get("Id") == attrs["Id"]), None)
        with self._lock:
            known = self._by_id.get(attrs["Id"])
        if known is not None:
            runtime, pod_uid = known.runtime, known.pod_uid or pod_uid
        return container_from_inspect(attrs, row, runtime=runtime or self.engine, pod_uid=pod_uid,
                                      source=self.engine)

    def _store(self, action: str, container: Container) -> None:
        with self._lock:
            old = self._by_id.get(container.id)
            self._by_id[container.id] = container
            self._looked_up.pop(container.id, None)
        if old != container or action != "update":
            self._notify(action, container)

    def _remove(self, cid: str) -> None:
        with self._lock:
            old = self._by_id.pop(cid, None)
            self._destroyed[cid] = None
            while len(self._destroyed) > 1024:  # ids are never reused; only recent ones matter
                del self._destroyed[next(iter(self._destroyed))]
        if old is not None:
            self._notify("destroy", old)

    def _notify(self, action: str, container: Container) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for cb in subscribers:
            try:
                cb(action, container)
            except Exception:
                # A faulty subscriber must not stop the watcher for everyone else.
                self.counters["callback_errors"] += 1
                log.exception("container subscriber %r failed", cb)

    def _close_stream(self) -> None:
        with self._lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.close()
            except Exception:
                pass

    def _run(self) -> None:
        delay = self._backoff[0]
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._connect_and_watch()
                if self._stop.is_set():
                    break
                self.connected = False
                self._status = ("reconnecting: the %s event stream ended (engine restarted?); "
                                "serving cached containers" % self.engine)
                self._drop_client()
                # A stream that ends at once (`podman events` without an events backend)
                # backs off like an absent engine: each attempt re-lists every container.
                brief = time.monotonic() - started < 5.0
                wait, delay = (delay, min(delay * 2, self._backoff[1])) if brief else \
                    (self._backoff[0], self._backoff[0])
            except Exception as exc:
                self.connected = False
                self._status = _unavailable_hint(self.engine, exc)
                log.debug("docker watcher: %s", exc)
                self._drop_client()
                # Exponential backoff while dockerd stays away, so a stopped engine costs nothing.
                wait, delay = delay, min(delay * 2, self._backoff[1])
            finally:
                self._close_stream()
                self._first_attempt.set()
            self.counters["reconnects"] += 1
            self._stop.wait(wait)

    def _drop_client(self) -> None:
        """Forget our own client (its pool may hold dead sockets); a caller's client is kept."""
        if not self._own_client:
            return
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:
                pass

    def _connect_and_watch(self) -> None:
        with self._lock:
            client = self._client
        if client is None:
            client = self._factory()
            with self._lock:
                self._client = client
        client.ping()
        # Open the stream before listing so that no change between the two is missed.
        stream = client.events(decode=True, filters={"type": "container"})
        with self._lock:
            self._stream = stream
        if self._stop.is_set():
            return
        version = ""
        try:
            version = client.version().get("Version", "")
        except Exception:
            pass
        # Connected from here on (subscribers notified by the resync may look at the status).
        self.connected = True
        engine = "podman" if self.engine == PODMAN else "Docker"
        self._status = "connected to %s %s" % (engine, version) if version else "connected to " + engine
        self._resync(client)
        self._first_attempt.set()
        for event in stream:
            if self._stop.is_set():
                return
            self._on_event(client, event)

    def _resync(self, client) -> None:
        import docker.errors
        rows = client.api.containers(all=True)
        seen = set()
        for row in rows:
            cid = row.get("Id")
            if not cid:
                continue
            seen.add(cid)
            try:
                attrs = client.api.inspect_container(cid)
            except docker.errors.NotFound:
                continue
            known = self._by_id.get(cid)
            c = container_from_inspect(attrs, row, runtime=known.runtime if known else self.engine,
                                       pod_uid=known.pod_uid if known else None, source=self.engine)
            if known != c:
                self._store("start" if known is None and c.state == "running" else "update", c)
        with self._lock:
            gone = [cid for cid, c in self._by_id.items() if c.source == self.engine and cid not in seen]
        for cid in gone:
            self._remove(cid)

    def _on_event(self, client, event) -> None:
        if not isinstance(event, dict) or event.get("Type", "container") != "container":
            return
        self.counters["events"] += 1
        action = str(event.get("Action") or event.get("status") or "")
        action = _ACTION_ALIASES.get(action, action)
        actor = event.get("Actor") or {}
        cid = actor.get("ID") or event.get("id")
        if not isinstance(cid, str) or not BARE_ID.fullmatch(cid):
            return
        if action == "destroy":
            self._remove(cid)
        elif action == "die":
            with self._lock:
                known = self._by_id.get(cid)
            if known is not None:
                # No inspect: with --rm the container is usually gone already.
                self._store("die", dataclasses.replace(known, state="exited", pid=None))
        elif action in self._INSPECT_ACTIONS:
            c = self._fetch(client, cid)
            if c is not None:
                self._store(action if action in ("create", "start", "rename") else "update", c)
