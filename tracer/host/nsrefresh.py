"""Targeted refreshes: what the tracer cannot see, read again for just the namespaces that changed.

Two things change without a namespace event the model could act on:

* pins: `ip netns add X` bind-mounts the new netns after its unshare, `ip netns del X`
  only unmounts.  The kernel flags every change of the reader's mount table to a
  poll() on /proc/self/mountinfo (POLLPRI), so the table is read again only after
  a change, and only the namespaces whose pins differ become ops;
* user-namespace owners and maps: NS_GET_OWNER_UID and /proc/PID/uid_map of a user
  namespace an unshare or clone event just made (the map is written after the
  call, by the process itself or its parent, so the read is retried until it is
  there or `user_deadline` passed).

Cost is bounded by construction: the service calls `ops()` from a thread of its own
every `min_interval`; rounds are at least `min_interval` apart (a storm of events or mounts
coalesces into one round), a round reads the mount table at most once and at
most `max_users` user namespaces; user namespaces beyond that wait for the next
round, and those still pending after `user_deadline` are left to the full
reconcile and counted ("dropped").  `stats()` has the counts and the time spent.

Ops produced (tracer/graph/ops.py):
  {"op": "pins", "type", "inode", "local": [paths]}   pins in the reader's mount namespace
  {"op": "ns", "type": "user", "inode", "owner_uid", "uid_map", "gid_map"}
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections import Counter
from typing import Callable, Optional

from . import nsfs
from .pins import parse_nsfs_mounts

_CHANGED = select.POLLPRI | select.POLLERR


class MountTableWatch:
    """The nsfs mounts of the reader's mount table, read again only after the kernel says it changed."""

    def __init__(self, path: str = "/proc/self/mountinfo"):
        self.path = path
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self._poll = select.poll()
        self._poll.register(self._fd, _CHANGED)
        self._poll.poll(0)          # the first poll reports the table as changed: consume it
        self.pins = self.read()

    def read(self) -> dict:
        """{(type, inode): (mount points...)} of the table as it is now."""
        os.lseek(self._fd, 0, os.SEEK_SET)
        chunks = []
        while True:
            chunk = os.read(self._fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
        text = b"".join(chunks).decode("utf-8", "surrogateescape")
        pins: dict = {}
        for ns_type, _dev, inode, mount_point in parse_nsfs_mounts(text):
            paths = pins.setdefault((ns_type, inode), [])
            if mount_point not in paths:
                paths.append(mount_point)
        return {key: tuple(paths) for key, paths in pins.items()}

    def changes(self) -> Optional[dict]:
        """{(type, inode): new mount points} for every namespace whose pins changed since
        the last call (an empty tuple: unpinned here); None when the table did not change."""
        if not self._poll.poll(0):
            return None
        old, new = self.pins, self.read()
        self.pins = new
        return {key: new.get(key, ()) for key in set(old) | set(new) if old.get(key, ()) != new.get(key, ())}

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def read_user_ns(pid: int, inode: int, proc_root: str = "/proc") -> Optional[dict]:
    """Owner uid and maps of the user namespace `inode` through its member `pid`;
    None when the process is gone or is in another user namespace by now."""
    base = "%s/%d/" % (proc_root, pid)
    try:
        fd = os.open(base + "ns/user", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if os.fstat(fd).st_ino != inode:
            return None
        owner = nsfs.owner_uid(fd)
    finally:
        os.close(fd)
    maps = {}
    for name in ("uid_map", "gid_map"):
        try:
            with open(base + name) as f:
                maps[name] = f.read()
        except OSError:
            return None
    return {"owner_uid": owner, "uid_map": maps["uid_map"], "gid_map": maps["gid_map"]}


class TargetedRefresh:
    """Pins and new user namespaces, refreshed within a round or two of the change."""

    def __init__(self, is_live: Callable[[str, int], bool], *, watch: Optional[MountTableWatch] = None,
                 min_interval: float = 0.2, max_users: int = 64, user_deadline: float = 2.0,
                 pin_wait: float = 1.0, proc_root: str = "/proc", clock=time.monotonic):
        self.is_live = is_live
        self.watch = watch
        self.min_interval = min_interval
        self.max_users = max_users
        self.user_deadline = user_deadline
        self.pin_wait = pin_wait
        self.proc_root = proc_root
        self.clock = clock
        self._users: dict = {}          # inode -> (pid, deadline); the collector's thread adds
        self._users_lock = threading.Lock()
        self._pins: dict = {}           # (type, inode) -> (paths, wait until): new pins of unknown namespaces
        self._last_round = None
        self.counters = Counter()
        self._round_times: list = []    # monotonic times of the last rounds (rate)

    def note_event(self, event) -> None:
        """Per event, on the collector's thread: remember user namespaces made (cheap)."""
        inode = event.ns.get("user") if event.ns else None
        if inode is None or event.ret < 0 or event.syscall == "setns":
            return
        pid = event.child_pid if event.child_pid else event.pid
        with self._users_lock:
            if pid and len(self._users) < 4 * self.max_users:
                self._users[inode] = (pid, self.clock() + self.user_deadline)
                self.counters["user_noted"] += 1
            else:
                self.counters["user_overflow"] += 1     # left to the full reconcile

    def due(self) -> bool:
        return self._last_round is None or self.clock() - self._last_round >= self.min_interval

    def ops(self) -> list:
        """This round's ops (none when the last round was under `min_interval` ago)."""
        if not self.due():
            return []
        now = self._last_round = self.clock()
        started = time.perf_counter()
        out = self._pin_ops(now) + self._user_ops(now)
        # The wall time goes into each op: an op without one is applied at "now", and a
        # replay of the journal would end an unpinned namespace at the replay's time.
        wall = time.time()
        for op in out:
            op["ts"] = wall
        spent = time.perf_counter() - started
        self.counters["rounds"] += 1
        self.counters["ops"] += len(out)
        self.counters["busy_us"] += int(spent * 1e6)
        self.counters["max_round_us"] = max(self.counters["max_round_us"], int(spent * 1e6))
        if out:
            self._round_times = [t for t in self._round_times if now - t < 1.0] + [now]
            self.counters["max_rounds_per_s"] = max(self.counters["max_rounds_per_s"], len(self._round_times))
        return out

    def _pin_ops(self, now: float) -> list:
        if self.watch is not None:
            changed = self.watch.changes()
            if changed is not None:
                self.counters["mount_reads"] += 1
                for key, paths in changed.items():
                    self._pins[key] = (paths, now + self.pin_wait)
        out = []
        for key, (paths, wait_until) in list(self._pins.items()):
            ns_type, inode = key
            # A new pin of a namespace whose creating event has not reached the model yet
            # waits for it (else the pin would make a namespace the event then replaces).
            if paths and not self.is_live(ns_type, inode) and now < wait_until:
                continue
            del self._pins[key]
            out.append({"op": "pins", "type": ns_type, "inode": inode, "local": list(paths)})
        self.counters["pin_ops"] += len(out)
        return out

    def _user_ops(self, now: float) -> list:
        out, done = [], []
        with self._users_lock:
            batch = list(self._users.items())[: self.max_users]
        for inode, (pid, deadline) in batch:
            if not self.is_live("user", inode) and now < deadline:
                continue        # its event has not reached the model yet (an op now would make it twice)
            info = read_user_ns(pid, inode, self.proc_root)
            self.counters["user_reads"] += 1
            if info is not None and info["uid_map"]:
                out.append(dict(info, op="ns", type="user", inode=inode))
                done.append((inode, pid))
            elif info is None or now >= deadline:
                if info is not None:
                    out.append(dict(info, op="ns", type="user", inode=inode))   # the owner at least
                self.counters["user_dropped" if info is None else "user_unmapped"] += 1
                done.append((inode, pid))
        with self._users_lock:
            for inode, pid in done:
                if self._users.get(inode, (None,))[0] == pid:
                    del self._users[inode]
        return out

    def stats(self) -> dict:
        return dict(self.counters, pending_users=len(self._users), pending_pins=len(self._pins))

    def close(self) -> None:
        if self.watch is not None:
            self.watch.close()
