"""Container records: what nsgraph knows about one container, from a cgroup path or the Docker engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

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
    source: str = "cgroup"       # "docker" when the engine supplied the details
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
        pod_uid=pod_uid, source="docker", shares=shared_namespaces(attrs.get("HostConfig") or {}))


def matches_container(container: Optional[Container], wanted: Iterable[str]) -> bool:
    """True when `container` is one of `wanted` (names, or id prefixes of 4+ characters)."""
    if container is None:
        return False
    for w in wanted:
        w = w.lstrip("/")
        if container.name == w or (len(w) >= 4 and container.id.startswith(w)):
            return True
    return False
