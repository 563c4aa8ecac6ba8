"""Catalogs: the container engines nsgraph asks for names, one ContainerCatalog each.

Docker is always asked (its catalog says so when it is away); podman when it is
installed or its API socket exists.  Each container is resolved by the engine its
cgroup path names (libpod-<id> -> podman, the rest -> Docker), and name lookups ask
every engine, Docker first.  The interface is the catalog's, so callers (the
service, `trace`, `snapshot`, attribution) do not care how many engines there are.
"""

from __future__ import annotations

import os
import shutil
from typing import Callable, Optional

from .catalog import ContainerCatalog
from .cgroups import DOCKER, PODMAN, ContainerRef, parse_cgroup, read_cgroup
from .docker_client import podman_socket
from .records import Container, container_from_ref, find_container


def podman_present() -> bool:
    """podman is installed, or something serves its API socket."""
    return shutil.which("podman") is not None or os.path.exists(podman_socket())


class Catalogs:
    """Several engines' ContainerCatalogs behind one catalog interface."""

    def __init__(self, catalogs: list):
        if not catalogs:
            raise ValueError("at least one catalog")
        self.catalogs = list(catalogs)
        self._by_engine = {c.engine: c for c in self.catalogs}

    def start(self, wait: float = 5.0) -> "Catalogs":
        for catalog in self.catalogs:
            catalog.start(wait=wait)
        return self

    def close(self, timeout: float = 5.0) -> None:
        for catalog in self.catalogs:
            catalog.close(timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    # Health and messages are about Docker, the engine the dashboard's demos need;
    # the other engines' states are in `engines()`.
    @property
    def primary(self) -> ContainerCatalog:
        return self._by_engine.get(DOCKER, self.catalogs[0])

    @property
    def connected(self) -> bool:
        return self.primary.connected

    @property
    def status(self) -> str:
        return self.primary.status

    def engines(self) -> dict:
        """{engine: status text} of every engine asked."""
        return {c.engine: c.status for c in self.catalogs}

    def any_connected(self) -> bool:
        return any(c.connected for c in self.catalogs)

    @property
    def counters(self) -> dict:
        total: dict = {}
        for catalog in self.catalogs:
            for key, value in catalog.counters.items():
                total[key] = total.get(key, 0) + value
        return total

    def resolve(self, pid: int, cgroup=None) -> Optional[Container]:
        ref = parse_cgroup(cgroup) if cgroup is not None else parse_cgroup(read_cgroup(pid))
        if ref is None:
            return None
        return self.resolve_ref(ref)

    def resolve_ref(self, ref: ContainerRef) -> Container:
        catalog = self._by_engine.get(PODMAN if ref.runtime == PODMAN else DOCKER)
        if catalog is None:
            return container_from_ref(ref)
        return catalog.resolve_ref(ref)

    def by_name(self, name: str) -> Optional[Container]:
        for catalog in self.catalogs:
            found = catalog.by_name(name)
            if found is not None:
                return found
        return None

    def by_id(self, id_or_prefix: str) -> Optional[Container]:
        return find_container(id_or_prefix, self.containers(), key=lambda c: (None, c.id))

    def containers(self) -> list:
        return sorted((c for catalog in self.catalogs for c in catalog.containers()), key=lambda c: c.name)

    def subscribe(self, callback: Callable[[str, Container], None]) -> Callable[[], None]:
        unsubscribers = [catalog.subscribe(callback) for catalog in self.catalogs]

        def unsubscribe() -> None:
            for undo in unsubscribers:
                undo()
        return unsubscribe


def open_catalogs(podman: Optional[bool] = None) -> Catalogs:
    """Docker's catalog, plus podman's when `podman` is true (None: when podman is present).
    Not started: call start(wait)."""
    catalogs = [ContainerCatalog()]
    if podman or (podman is None and podman_present()):
        catalogs.append(ContainerCatalog(engine=PODMAN))
    return Catalogs(catalogs)
