"""Which container a process belongs to: from its cgroup path, enriched by the Docker engine.

Attribution first comes from /proc/<pid>/cgroup alone, so it works with Docker
stopped, for runtimes nsgraph has no API for (containerd/CRI, CRI-O, Podman,
systemd-nspawn, LXC), and for recorded data. When the Docker engine is reachable,
ContainerCatalog adds the names (as `docker ps` shows them), images, labels,
state and init pid, and an event-stream thread keeps them current.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

log = logging.getLogger(__name__)

DOCKER = "docker"
CONTAINERD = "containerd"
CRIO = "cri-o"
CRI = "cri"                   # a Kubernetes container whose runtime the path does not tell
PODMAN = "podman"
NSPAWN = "systemd-nspawn"
VM = "libvirt-qemu"           # machined also registers VMs (machine-qemu\x2dN\x2dNAME.scope)
LXC = "lxc"
UNKNOWN = "unknown"           # a 64-hex cgroup directory of no known layout (custom cgroup parent)

# Runtimes whose containers the Docker engine may know (Kubernetes on dockershim/cri-dockerd
# runs them through Docker; custom --cgroup-parent paths give UNKNOWN).
_DOCKER_LOOKUP_RUNTIMES = frozenset({DOCKER, CRI, UNKNOWN})

# Larger inputs are not cgroup files (paths are bounded by PATH_MAX per controller).
MAX_INPUT = 256 * 1024

_HEX64 = r"[0-9a-f]{64}"
_SCOPE_PATTERNS = (
    # (regex over one path component, runtime); conmon scopes are deliberately
    # absent: the monitor process is not in the container.
    (re.compile(r"docker-(%s)\.scope" % _HEX64), DOCKER),
    (re.compile(r"cri-containerd-(%s)\.scope" % _HEX64), CONTAINERD),
    (re.compile(r"crio-(%s)\.scope" % _HEX64), CRIO),
    (re.compile(r"libpod-(%s)(?:\.scope)?" % _HEX64), PODMAN),
    (re.compile(r"nerdctl-(%s)\.scope" % _HEX64), CONTAINERD),
)
_BARE_ID = re.compile(_HEX64)
_NSPAWN = re.compile(r"machine-(.+)\.scope")
_LXC = re.compile(r"lxc\.payload\.(.+)")
_POD_UID = r"[0-9a-fA-F][0-9a-fA-F_-]{7,63}"
_K8S_POD_CGROUPFS = re.compile(r"pod(%s)" % _POD_UID)
_K8S_POD_SYSTEMD = re.compile(r"kubepods(?:-[a-z]+)?-pod(%s)\.slice" % _POD_UID)
_PODMAN_POD = re.compile(r"machine-libpod_pod_([0-9a-f]{64})\.slice")
_SYSTEMD_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")
_CGROUP_LINE = re.compile(r"^(\d+):([^:]*):(.*)$")


@dataclass(frozen=True)
class ContainerRef:
    """What a cgroup path alone tells about a container."""
    runtime: str
    id: str                               # 64-hex id, or the machine name for nspawn/LXC
    name_hint: Optional[str] = None       # a name when the path carries one (nspawn, LXC)
    pod_uid: Optional[str] = None         # Kubernetes pod uid (dashed) or Podman pod id
    outer: tuple = ()                     # enclosing containers (outermost first) for nested paths

    @property
    def short_id(self) -> str:
        return self.id[:12] if _BARE_ID.fullmatch(self.id) else self.id


def systemd_unescape(name: str) -> str:
    """Undo systemd unit-name escaping (`\\x2d` -> `-`)."""
    return _SYSTEMD_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), name)


def parse_cgroup_path(path: str) -> Optional[ContainerRef]:
    """The innermost container named by one cgroup path, or None."""
    if not isinstance(path, str) or not path.startswith("/") or len(path) > MAX_INPUT:
        return None
    return _parse_path(path)


# Processes share few distinct cgroup paths, so repeated look-ups are dictionary hits.
@functools.lru_cache(maxsize=4096)
def _parse_path(path: str) -> Optional[ContainerRef]:
    if path.endswith(" (deleted)"):
        path = path[: -len(" (deleted)")]
    found: list[ContainerRef] = []
    pod_uid = None
    in_kubepods = False
    prev = ""
    for comp in path.split("/"):
        if not comp:
            continue
        ref = None
        if comp.startswith("kubepods"):
            in_kubepods = True
            m = _K8S_POD_SYSTEMD.fullmatch(comp)
            if m:
                pod_uid = m.group(1).replace("_", "-").lower()
        elif in_kubepods and _K8S_POD_CGROUPFS.fullmatch(comp):
            pod_uid = comp[3:].lower()
        elif _PODMAN_POD.fullmatch(comp):
            pod_uid = comp[len("machine-libpod_pod_"):-len(".slice")]
        else:
            for rx, runtime in _SCOPE_PATTERNS:
                m = rx.fullmatch(comp)
                if m:
                    ref = ContainerRef(runtime, m.group(1), pod_uid=pod_uid)
                    break
            else:
                if _BARE_ID.fullmatch(comp):
                    if prev == "docker":
                        runtime = DOCKER
                    elif in_kubepods and pod_uid:
                        runtime = CRI
                    else:
                        runtime = UNKNOWN
                    ref = ContainerRef(runtime, comp, pod_uid=pod_uid)
                elif _NSPAWN.fullmatch(comp):
                    # systemd-machined scopes: nspawn containers (and VMs registered the same way).
                    name = systemd_unescape(comp[len("machine-"):-len(".scope")])
                    if name and "/" not in name and name.isprintable():
                        ref = ContainerRef(VM if name.startswith("qemu-") else NSPAWN, name,
                                           name_hint=name)
                elif _LXC.fullmatch(comp) and comp.isprintable():
                    name = comp[len("lxc.payload."):]
                    ref = ContainerRef(LXC, name, name_hint=name)
        if ref is not None:
            found.append(ref)
            pod_uid = None  # a pod context does not leak into containers nested inside
            in_kubepods = False
        prev = comp
    if not found:
        return None
    inner = found[-1]
    if len(found) > 1:
        inner = dataclasses.replace(inner, outer=tuple(found[:-1]))
    return inner


def parse_cgroup(text) -> Optional[ContainerRef]:
    """The container named by a /proc/<pid>/cgroup file, one of its lines, or a bare path.

    The unified (v2, "0::") line is preferred; on v1 or hybrid hosts where it
    names nothing, the v1 controller lines are tried (name=systemd first).
    Malformed input gives None, never an exception.
    """
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", "replace")
    if not isinstance(text, str) or not text or len(text) > MAX_INPUT:
        return None
    unified: list[str] = []
    systemd: list[str] = []
    others: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("/"):
            unified.append(line)
            continue
        m = _CGROUP_LINE.match(line)
        if not m:
            continue
        hier, controllers, path = m.groups()
        if hier == "0" and controllers == "":
            unified.append(path)
        elif controllers == "name=systemd":
            systemd.append(path)
        else:
            others.append(path)
    for path in unified + systemd + others:
        ref = parse_cgroup_path(path)
        if ref is not None:
            return ref
    return None


def read_cgroup(pid: int) -> Optional[str]:
    """/proc/<pid>/cgroup, or None when the process vanished or cannot be read."""
    try:
        with open("/proc/%d/cgroup" % int(pid), "rb") as f:
            return f.read(MAX_INPUT + 1).decode("utf-8", "replace")
    except (OSError, ValueError, TypeError):
        return None


# --- enrichment from the Docker engine -------------------------------------------------

@dataclass(frozen=True)
class Container:
    id: str
    name: str                    # as `docker ps` shows it; the short id when nothing better is known
    image: Optional[str]         # as `docker ps` shows it (the reference it was created from)
    runtime: str
    labels: dict = field(default_factory=dict, hash=False)
    state: str = "unknown"       # Docker's State.Status, or "unknown" from a cgroup path alone
    pid: Optional[int] = None    # the init process (State.Pid) while running
    pod_uid: Optional[str] = None
    source: str = "cgroup"       # "docker" when the engine supplied the details

    @property
    def short_id(self) -> str:
        return self.id[:12] if _BARE_ID.fullmatch(self.id) else self.id

    def to_json(self) -> dict:
        return {"id": self.id, "name": self.name, "image": self.image, "runtime": self.runtime,
                "pid": self.pid, "labels": dict(self.labels), "state": self.state,
                "pod_uid": self.pod_uid, "source": self.source}


def container_from_ref(ref: ContainerRef) -> Container:
    return Container(id=ref.id, name=ref.name_hint or ref.short_id, image=None,
                     runtime=ref.runtime, pod_uid=ref.pod_uid)


def container_from_inspect(attrs: dict, listed: Optional[dict] = None, runtime: str = DOCKER,
                           pod_uid: Optional[str] = None) -> Container:
    """A Container from `docker inspect` data (and the `docker ps` row for its image column)."""
    config = attrs.get("Config") or {}
    state = attrs.get("State") or {}
    image = (listed or {}).get("Image") or config.get("Image") or attrs.get("Image")
    pid = state.get("Pid") or None
    return Container(
        id=attrs["Id"], name=(attrs.get("Name") or "").lstrip("/") or attrs["Id"][:12],
        image=image, runtime=runtime, labels=dict(config.get("Labels") or {}),
        state=state.get("Status") or "unknown", pid=pid if state.get("Running") else None,
        pod_uid=pod_uid, source="docker")


def _docker_unavailable_hint(exc: BaseException) -> str:
    return ("Docker engine not reachable (%s); container names, images and labels are "
            "unavailable and attribution uses cgroup paths only; start dockerd: "
            "(`dockerd >/var/log/dockerd.log 2>&1 &`) or set DOCKER_HOST" % _short_error(exc))


def _short_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


Callback = Callable[[str, Container], None]


class ContainerCatalog:
    """Containers known to the Docker engine, kept current by its event stream.

    resolve() never blocks on Docker for a container already seen; an unknown id
    is looked up at most once per `lookup_interval` seconds.  Without a reachable
    engine everything still works from cgroup paths, and `status` says why.
    Subscribers get (action, container) with action in create/start/update/die/
    destroy/rename, called from the watcher thread.
    """

    # "die" and "destroy" are handled from the event alone; exec_*, attach, resize... change nothing.
    _INSPECT_ACTIONS = frozenset({"create", "start", "restart", "rename", "pause", "unpause", "update"})

    def __init__(self, client=None, *, client_factory: Optional[Callable[[], object]] = None,
                 lookup_interval: float = 5.0, backoff: tuple = (0.5, 30.0)):
        if client is not None and client_factory is not None:
            raise ValueError("pass client or client_factory, not both")
        self._own_client = client is None
        self._factory = client_factory or ((lambda: client) if client is not None else _default_factory)
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
        name = name.lstrip("/")
        with self._lock:
            for c in self._by_id.values():
                if c.name == name:
                    return c
        return None

    def by_id(self, id_or_prefix: str) -> Optional[Container]:
        with self._lock:
            c = self._by_id.get(id_or_prefix)
            if c is not None:
                return c
            if len(id_or_prefix) >= 4:
                matches = [c for i, c in self._by_id.items() if i.startswith(id_or_prefix)]
                if len(matches) == 1:
                    return matches[0]
        return None

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
            if found is not None or ref.runtime not in _DOCKER_LOOKUP_RUNTIMES:
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
        container = self._fetch(client, ref.id, runtime=ref.runtime if ref.runtime != UNKNOWN else DOCKER,
                                pod_uid=ref.pod_uid)
        if container is None:
            return None
        with self._lock:
            # The watcher may have seen it destroyed while we asked; do not resurrect it.
            if container.id in self._destroyed:
                return container
        self._store("update", container)
        return container

    def _fetch(self, client, cid: str, runtime: str = DOCKER, pod_uid=None) -> Optional[Container]:
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
        return container_from_inspect(attrs, row, runtime=runtime, pod_uid=pod_uid)

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
            try:
                self._connect_and_watch()
                if self._stop.is_set():
                    break
                self.connected = False
                self._status = ("reconnecting: the Docker event stream ended (dockerd restarted?); "
                                "serving cached containers")
                self._drop_client()
                wait, delay = self._backoff[0], self._backoff[0]
            except Exception as exc:
                self.connected = False
                self._status = _docker_unavailable_hint(exc)
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
        self._status = "connected to Docker %s" % version if version else "connected to Docker"
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
            c = container_from_inspect(attrs, row, runtime=known.runtime if known else DOCKER,
                                       pod_uid=known.pod_uid if known else None)
            if known != c:
                self._store("start" if known is None and c.state == "running" else "update", c)
        with self._lock:
            gone = [cid for cid, c in self._by_id.items() if c.source == "docker" and cid not in seen]
        for cid in gone:
            self._remove(cid)

    def _on_event(self, client, event) -> None:
        if not isinstance(event, dict) or event.get("Type", "container") != "container":
            return
        self.counters["events"] += 1
        action = str(event.get("Action") or event.get("status") or "")
        actor = event.get("Actor") or {}
        cid = actor.get("ID") or event.get("id")
        if not isinstance(cid, str) or not _BARE_ID.fullmatch(cid):
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


def _default_factory():
    import docker
    return docker.from_env(timeout=10)


def attribute_all(pids: Iterable[int], catalog: Optional[ContainerCatalog] = None) -> dict:
    """pid -> Container for the given pids that are in a container (reads /proc)."""
    out = {}
    for pid in pids:
        text = read_cgroup(pid)
        ref = parse_cgroup(text) if text else None
        if ref is not None:
            out[pid] = catalog.resolve_ref(ref) if catalog else container_from_ref(ref)
    return out


_UNRESOLVED = object()


def cgroup2_mount(mountinfo: str = "/proc/self/mountinfo") -> Optional[str]:
    """Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or .../unified on hybrid hosts)."""
    try:
        with open(mountinfo) as f:
            for line in f:
                left, _, right = line.partition(" - ")
                if right.split(" ", 1)[0] == "cgroup2":
                    return left.split(" ")[4]
    except OSError:
        return None
    return None


class CgroupIds:
    """cgroup v2 id (the inode of its cgroupfs directory, never reused) -> path.

    Events carry the id the task had in the kernel, so a process that is gone by
    the time we look (`docker run --rm ... ls`) is still attributed.  Unknown ids
    trigger a rescan of the hierarchy: at once when the id is newer than any seen
    (the kernel hands out cgroup ids in increasing order, so it names a cgroup made
    since the last scan), else at most every `rescan_interval` seconds.
    """

    def __init__(self, root: Optional[str] = None, rescan_interval: float = 0.2, max_entries: int = 100000,
                 kernel_lookup: Optional[Callable[[int], Optional[str]]] = None):
        self.root = root if root is not None else cgroup2_mount()
        # The probes' record of paths at mkdir time (Probes.cgroup_path): exact, and
        # it still knows cgroups that are gone.
        self.kernel_lookup = kernel_lookup
        self.rescan_interval = rescan_interval
        self.max_entries = max_entries
        self._paths: dict = {}
        self._last_scan = 0.0
        self._newest_id = 0
        self.scans = 0

    def _scan(self) -> None:
        import os
        self._last_scan = time.monotonic()
        self.scans += 1
        if not self.root:
            return
        paths = {}
        stack = [self.root]
        while stack and len(paths) < self.max_entries:
            top = stack.pop()
            try:
                with os.scandir(top) as entries:
                    for entry in entries:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                st = os.stat(top)
            except OSError:
                continue  # removed while we walked
            paths[st.st_ino] = "/" + os.path.relpath(top, self.root) if top != self.root else "/"
        self._paths = paths
        self._newest_id = max(paths, default=0)

    def path(self, cgroup_id: int) -> Optional[str]:
        if not cgroup_id:
            return None
        found = self._paths.get(cgroup_id)
        if found is None and self.kernel_lookup is not None:
            found = self.kernel_lookup(cgroup_id)
            if found is not None:
                self._paths[cgroup_id] = found
                return found
        if found is None and (cgroup_id > self._newest_id
                              or time.monotonic() - self._last_scan >= self.rescan_interval):
            self._scan()
            found = self._paths.get(cgroup_id)
        return found


class EventContainers:
    """Tags a stream of events with the container of their process.

    The cgroup id captured in the kernel at the event decides, so that processes
    that are already gone are attributed too.  Events without one (recordings from
    older versions) fall back to /proc/<pid>/cgroup.
    """

    def __init__(self, catalog: Optional[ContainerCatalog] = None, cgroup_ids: Optional[CgroupIds] = None,
                 max_cached: int = 65536):
        self.catalog = catalog
        self.cgroup_ids = cgroup_ids if cgroup_ids is not None else CgroupIds()
        self.max_cached = max_cached
        self._by_cgroup: dict = {}

    def _from_ref(self, ref: Optional[ContainerRef]) -> Optional[Container]:
        if ref is None:
            return None
        return self.catalog.resolve_ref(ref) if self.catalog is not None else container_from_ref(ref)

    def container_of_cgroup(self, cgroup_id: int) -> Optional[Container]:
        found = self._by_cgroup.get(cgroup_id, _UNRESOLVED)
        if found is _UNRESOLVED:
            path = self.cgroup_ids.path(cgroup_id)
            if path is None:
                return None  # not cached: the cgroup may appear at the next rescan
            found = self._from_ref(parse_cgroup("0::" + path))
            if len(self._by_cgroup) >= self.max_cached:
                self._by_cgroup.clear()
            self._by_cgroup[cgroup_id] = found
        elif found is not None and self.catalog is not None and found.source != "docker":
            # Docker may have learnt the name since: ask the catalog again (cheap, cached there).
            found = self._from_ref(parse_cgroup("0::" + (self.cgroup_ids.path(cgroup_id) or "")))
        return found

    def container_of_pid(self, pid: int) -> Optional[Container]:
        text = read_cgroup(pid)
        return self._from_ref(parse_cgroup(text) if text else None)

    def tag(self, event) -> Optional[Container]:
        """Set event.container to the container's name (None on the host) and return it."""
        cgroup_id = getattr(event, "cgroup_id", 0)
        container = self.container_of_cgroup(cgroup_id) if cgroup_id else self.container_of_pid(event.pid)
        event.container = container.name if container is not None else None
        return container


def matches_container(container: Optional[Container], wanted: Iterable[str]) -> bool:
    """True when `container` is one of `wanted` (names, or id prefixes of 4+ characters)."""
    if container is None:
        return False
    for w in wanted:
        w = w.lstrip("/")
        if container.name == w or (len(w) >= 4 and container.id.startswith(w)):
            return True
    return False
