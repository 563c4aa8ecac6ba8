"""Attributing processes and events to containers: cgroup v2 ids -> paths -> containers."""

from __future__ import annotations

import time
from typing import Callable, Optional

from .catalog import ContainerCatalog
from .cgroups import ContainerRef, cgroup2_mount, parse_cgroup, read_cgroup
from .records import Container, container_from_ref


_UNRESOLVED = object()


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
        event.container_id = container.id if container is not None else None
        return container
