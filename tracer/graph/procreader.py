"""Where the model's lazy process reads come from: /proc live, the recording on replay.

The model does no I/O itself.  A process's command line and cgroup (and so its
container) are read only when someone looks (a JSON view, a join's command),
once per exec, through the graph's ProcReader:

- LiveProcReader reads /proc now (tracer/host/procfs) and resolves the
  container; the graph journals what it read as a "procread" op, so ...
- ReplayProcReader hands back, in order, the reads a recording holds: a read
  the live run made while applying an event is journaled after that event, and
  the replayer stashes it here before feeding the event (history/replay.py).

`running(pid)` tells a reconcile whether a process its snapshot missed is
really there (live) or not (offline: never).
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Callable, List, Optional, Protocol

from ..host import procfs
from .entities import container_json

log = logging.getLogger(__name__)


class ProcReader(Protocol):
    dev: int        # the nsfs device of the namespaces it sees (0 offline: the checkpoint has it)

    def read(self, pid: int) -> Optional[dict]:
        """A "procread" op for pid ({"op", "pid", "cmdline", "cgroup"[, "container"]}),
        or None when there is nothing to read."""

    def running(self, pid: int) -> bool:
        """pid exists now and has not exited."""


class LiveProcReader:
    """Reads /proc; `resolve_container(pid, cgroup)` names the container (a Container or None)."""

    def __init__(self, resolve_container: Optional[Callable] = None, proc_root: str = "/proc"):
        self.resolve_container = resolve_container
        self.proc_root = proc_root
        self.dev = procfs.nsfs_device(proc_root)

    def read(self, pid: int) -> Optional[dict]:
        # A vanished process keeps what it inherited; its exit event follows.
        cmdline, cgroup = procfs.read_cmdline_cgroup(pid, self.proc_root)
        op = {"op": "procread", "pid": pid, "cmdline": cmdline, "cgroup": cgroup}
        if cgroup is not None and self.resolve_container is not None:
            try:
                op["container"] = container_json(self.resolve_container(pid, cgroup))
            except Exception:
                log.exception("container lookup for pid %d failed", pid)
        return op

    def running(self, pid: int) -> bool:
        return procfs.is_running(pid, self.proc_root)


class ReplayProcReader:
    """Offline: the reads a recording made, handed back in order; nothing else is ever read."""

    dev = 0

    def __init__(self):
        self._stash = {}            # pid -> deque of procread ops

    def stash(self, op: dict) -> None:
        """Hold a read the live run made while applying the event that comes next."""
        self._stash.setdefault(op["pid"], deque()).append(op)

    def read(self, pid: int) -> Optional[dict]:
        queue = self._stash.get(pid)
        if not queue:
            return None
        op = queue.popleft()
        if not queue:
            del self._stash[pid]
        return op

    def drain(self) -> List[dict]:
        """Every read still held (the recording ended before they were asked for)."""
        ops = [op for queue in self._stash.values() for op in queue]
        self._stash.clear()
        return ops

    def running(self, pid: int) -> bool:
        return False
