"""Attributing processes and events to containers: cgroup v2 ids -> paths -> containers."""

from __future__ import annotations

import time
from typing import Callable, Optional

from .catalog import ContainerCatalog
from .cgroups import ContainerRef, cgroup2_mount, parse_cgroup, read_cgroup
from .records import Container, container_from_ref, matches_container


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
        elif found is not None and self.catalog is not None and found.source == "cgroup":
            # The engine may have learnt the name since: ask the catalog again (cheap, cached there).
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


class TargetContainers:
    """Which of some wanted containers' namespaces a setns entered.

    `docker exec NAME` joins NAME's namespaces from runc before runc joins NAME's
    cgroup, so its setns calls carry no container of their own: they belong to
    NAME by their target.  The namespaces of each running wanted container are read
    from its init process (/proc/<State.Pid>/ns), at most every `refresh` seconds.
    """

    def __init__(self, catalog: ContainerCatalog, wanted, refresh: float = 1.0, proc_root: str = "/proc"):
        self.catalog = catalog
        self.wanted = list(wanted)
        self.refresh = refresh
        self.proc_root = proc_root
        self._inodes: dict = {}        # inode -> container name
        self._read_at = None

    def _read(self) -> None:
        import os
        self._read_at = time.monotonic()
        inodes = {}
        for c in self.catalog.containers():
            if c.pid and matches_container(c, self.wanted):
                base = "%s/%d/ns/" % (self.proc_root, c.pid)
                for slot in ("mnt", "uts", "ipc", "net", "pid", "cgroup", "time", "user"):
                    try:
                        inodes.setdefault(os.stat(base + slot).st_ino, c.name)
                    except OSError:
                        continue
        self._inodes = inodes

    def target_of(self, event) -> Optional[str]:
        """The wanted container whose namespace the setns event entered, or None."""
        inodes = [event.ns[s] for s in event.changed_types() if s in event.ns] or list(event.ns.values())
        found = next((self._inodes[i] for i in inodes if i in self._inodes), None)
        if found is None and (self._read_at is None or time.monotonic() - self._read_at >= self.refresh):
            self._read()
            found = next((self._inodes[i] for i in inodes if i in self._inodes), None)
        return found

    def unmatched(self) -> list:
        """Wanted names that match no container the engine knows."""
        known = self.catalog.containers()
        return [w for w in self.wanted if not any(matches_container(c, [w]) for c in known)]
