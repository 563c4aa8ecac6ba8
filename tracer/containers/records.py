"""Container records: what nsgraph knows about one container, from a cgroup path or the Docker engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional, TypeVar

from .cgroups import BARE_ID, DOCKER, ContainerRef


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
    source: str = "cgroup"       # the engine that supplied the details ("docker", "podman")
    # Namespace type -> id of the container whose namespace this one joined at
    # creation (`--network/--pid/--ipc container:X`): X owns it, this one shares it.
    shares: dict = field(default_factory=dict, hash=False)

    @property
    def short_id(self) -> str:
        return self.id[:12] if BARE_ID.fullmatch(self.id) else self.id

    def to_json(self) -> dict:
        return {"id": self.id, "name": self.name, "image": self.image, "runtime": self.runtime,
                "pid": self.pid, "labels": dict(self.labels), "state": self.state,
                "pod_uid": self.pod_uid, "source": self.source, "shares": dict(self.shares)}


def container_from_ref(ref: ContainerRef) -> Container:
    return Container(id=ref.id, name=ref.name_hint or ref.short_id, image=None,
                     runtime=ref.runtime, pod_uid=ref.pod_uid)


# HostConfig keys that name another container's namespace to join, by namespace type.
_SHARE_MODES = (("NetworkMode", "net"), ("PidMode", "pid"), ("IpcMode", "ipc"))


def shared_namespaces(host_config: dict) -> dict:
    """{type: container id} from `docker inspect`'s HostConfig modes of the form
    "container:X" (Docker stores X as the full id; podman likewise)."""
    shares = {}
    for key, ns_type in _SHARE_MODES:
        mode = host_config.get(key) or ""
        if mode.startswith("container:") and len(mode) > len("container:"):
            shares[ns_type] = mode[len("container:"):]
    return shares


def container_from_inspect(attrs: dict, listed: Optional[dict] = None, runtime: str = DOCKER,
                           pod_uid: Optional[str] = None, source: str = DOCKER) -> Container:
    """A Container from `docker inspect` data (and the `docker ps` row for its image column);
    podman's Docker-API answers have the same shape."""
    config = attrs.get("Config") or {}
    state = attrs.get("State") or {}
    image = (listed or {}).get("Image") or config.get("Image") or attrs.get("Image")
    pid = state.get("Pid") or None
    return Container(
        id=attrs["Id"], name=(attrs.get("Name") or "").lstrip("/") or attrs["Id"][:12],
        image=image, runtime=runtime, labels=dict(config.get("Labels") or {}),
        state=state.get("Status") or "unknown", pid=pid if state.get("Running") else None,
        pod_uid=pod_uid, source=source, shares=shared_namespaces(attrs.get("HostConfig") or {}))


# The one rule for naming a container (`nsgraph trace --container`, the catalog's
# by_id, the graph's and the dashboard's container lookups): its name as `docker ps`
# shows it (the leading "/" of `docker inspect`'s Name is ignored), its full id, or
# an id prefix of at least MIN_ID_PREFIX characters.  Docker itself accepts any
# unambiguous prefix; four characters keep a short word from matching ids by
# accident (one hex id in 65 536 starts with any given four) and still accept what
# people copy from `docker ps` (12).
MIN_ID_PREFIX = 4

T = TypeVar("T")


def names_container(wanted: str, name: Optional[str], container_id: Optional[str]) -> bool:
    """True when `wanted` names the container called `name` with id `container_id`."""
    if not wanted:
        return False
    if name and wanted.lstrip("/") == name.lstrip("/"):
        return True
    if not container_id:
        return False
    return wanted == container_id or (len(wanted) >= MIN_ID_PREFIX and container_id.startswith(wanted))


def find_container(wanted: str, candidates: Iterable[T],
                   key: Callable[[T], tuple] = lambda c: (c.name, c.id)) -> Optional[T]:
    """The one candidate `wanted` names (names_container): an exact name first, then a full
    id, then an id prefix that only one candidate has; None when none or several match.

    `key(candidate)` gives its (name, id): Container records by default; the graph's
    JSON dicts pass `key=lambda c: (c.get("name"), c["id"])`.
    """
    if not wanted:
        return None
    by_prefix = []
    by_id = None
    for candidate in candidates:
        name, container_id = key(candidate)
        if not names_container(wanted, name, container_id):
            continue
        if name and wanted.lstrip("/") == name.lstrip("/"):
            return candidate
        if wanted == container_id:
            by_id = candidate
        else:
            by_prefix.append(candidate)
    if by_id is not None:
        return by_id
    return by_prefix[0] if len(by_prefix) == 1 else None


def matches_container(container: Optional[Container], wanted: Iterable[str]) -> bool:
    """True when any of `wanted` names `container` (names_container's rule)."""
    if container is None:
        return False
    return any(names_container(w, container.name, container.id) for w in wanted)
