"""The inside view of namespaces: read each one the way its type allows, and say when it ended.

    views = inspect([NsTarget(...), ...])      # one dict per target, in order
    table = compare(views)                      # the same type, side by side

pid, mnt and user are read through a member's /proc files in this process;
uts, net, ipc, time and cgroup (and mnt/user without members) by one helper
process for the whole call (spawn.py).  Per target the answer is:

  {"id", "type", "inode", "label", "state": "ok" | "ended" | "error", "message",
   "read_via": "pid 1234" | "/run/netns/blue", "method": "proc" | "helper",
   "view": {...type-specific...} | None, "fields": [[label, value], ...], "elapsed_ms"}

"ended" is an answer, not an error: no member or pin was left to read through,
or the last one left while it was read (the next member is tried first).
"""

from __future__ import annotations

import errno
import importlib
import os
import time
from collections import Counter
from typing import Callable, Optional

from ...nstypes import DISPLAY_ORDER
from .procread import GONE
from .spawn import HelperError, run_helper
from .target import Handle, NsTarget, Opener

MODULES = {"uts": "utsns", "net": "netns", "pid": "pidns", "mnt": "mntns", "ipc": "ipcns",
           "user": "userns", "cgroup": "cgroupns", "time": "timens"}
TYPES = DISPLAY_ORDER

ENDED = "no process or bind mount keeps it alive any more (its last member exited)"
ENDED_WHILE_READ = "it ended while it was being read (its last member exited)"


def module(ns_type: str):
    return importlib.import_module("tracer.host.inside." + MODULES[ns_type])


def fields(ns_type: str, view: Optional[dict]) -> list:
    """The (label, value) rows shown for a view: value is a string or a list of lines."""
    return [list(row) for row in module(ns_type).fields(view)] if view else []


def answer(target: NsTarget, state: Optional[str] = None, message: Optional[str] = None) -> dict:
    """The answer shape for a target, with no view yet (state "ended" for one known to be gone)."""
    return {"id": target.id, "type": target.type, "inode": target.inode, "label": target.label,
            "state": state, "message": message, "read_via": None, "method": None, "view": None,
            "fields": [], "elapsed_ms": None}


class _Job:
    """One target being read: its opener, current handle, and answer."""

    def __init__(self, target: NsTarget, proc_root: str):
        self.target = target
        self.opener = Opener(target, proc_root)
        self.handle: Optional[Handle] = None
        self.result = answer(target)
        self.started = time.monotonic()

    def done(self, state: str, view=None, message=None) -> None:
        r = self.result
        r["state"], r["view"], r["message"] = state, view, message
        r["fields"] = fields(self.target.type, view) if state == "ok" else []
        r["elapsed_ms"] = round((time.monotonic() - self.started) * 1000, 1)

    def next_handle(self) -> bool:
        if self.handle is not None:
            self.handle.close()
        self.handle = self.opener.next_handle()
        if self.handle is not None:
            self.result["read_via"] = self.handle.source
        return self.handle is not None

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


def _read_in_process(job: _Job, proc_root: str) -> None:
    """pid always; mnt and user through a member.  Tries the next member when one vanishes."""
    mod = module(job.target.type)
    job.result["method"] = "proc"
    job.started = time.monotonic()
    while True:
        if job.target.type == "pid":
            view = mod.scan(job.target.inode, proc_root, Counter())
            if view["count"] == 0:
                job.done("ended", message=ENDED_WHILE_READ)
            else:
                job.done("ok", view)
            return
        try:
            view = mod.read_member(job.handle.proc_fd, job.handle.ns_fd)
        except OSError as exc:
            if exc.errno not in GONE:
                job.done("error", message="reading %s through %s failed: %s"
                         % (job.target.short, job.handle.source, exc.strerror))
                return
            if not job.next_handle():
                job.done("ended", message=ENDED_WHILE_READ)
                return
            continue
        job.done("ok", view)
        return


def _helper_job(job: _Job) -> Optional[dict]:
    """The helper request for one target, or None after answering it here."""
    extra = {}
    needs = getattr(module(job.target.type), "NEEDS_MEMBER_FILE", None)
    while needs and needs not in extra:
        if job.handle.proc_fd is None:
            job.done("error", message="%s has no process left to read its %s through (only %s keeps it)"
                     % (job.target.short, needs, job.handle.source))
            return None
        try:
            extra[needs] = job.handle.open_member_file(needs)
        except OSError:
            if not job.next_handle():          # that member left: the next one
                job.done("ended", message=ENDED_WHILE_READ)
                return None
    job.result["method"] = "helper"
    return {"type": job.target.type, "fd": job.handle.ns_fd, "extra": extra}


def _explain(reply: dict, job: _Job) -> str:
    if reply.get("errno") in (errno.EPERM, errno.EACCES):
        return ("joining %s needs root (CAP_SYS_ADMIN and CAP_SYS_CHROOT): run nsgraph as root"
                % job.target.short)
    return "reading %s inside failed: %s" % (job.target.short, reply.get("error"))


def _run_helpers(jobs: list, runner: Callable) -> None:
    """One helper for every joined target (a second one per extra user namespace)."""
    batches, current = [], []
    for job in jobs:
        request = _helper_job(job)
        if request is None:
            continue
        if request["type"] == "user" and any(r["type"] == "user" for _, r in current):
            batches.append(current)
            current = []
        current.append((job, request))
    if current:
        batches.append(current)
    for batch in batches:
        for job, _ in batch:
            job.started = time.monotonic()
        try:
            replies = runner([request for _, request in batch])
        except HelperError as exc:
            for job, _ in batch:
                job.done("error", message=str(exc))
            continue
        finally:
            for _, request in batch:
                for fd in request["extra"].values():
                    _close(fd)
        for (job, _), reply in zip(batch, replies):
            if isinstance(reply, dict) and isinstance(reply.get("view"), dict):
                job.done("ok", reply["view"])
            else:
                job.done("error", message=_explain(reply if isinstance(reply, dict) else {}, job))


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def inspect(targets: list, *, proc_root: str = "/proc", runner: Callable = run_helper,
            after_read: Optional[Callable] = None) -> list:
    """The inside view of every target, in order.

    after_read(targets) runs after the reads and before the ended-check; tests
    use it to make a last member exit at exactly that moment.
    """
    jobs = [_Job(t, proc_root) for t in targets]
    try:
        joined = []
        for job in jobs:
            if job.target.type not in MODULES:
                job.done("error", message="unknown namespace type %r" % job.target.type)
            elif not job.next_handle():
                job.done("ended", message=ENDED)
            elif job.target.type == "pid" or (not module(job.target.type).JOIN and job.handle.pid is not None):
                _read_in_process(job, proc_root)
            else:
                joined.append(job)
        _run_helpers(joined, runner)
        if after_read is not None:
            after_read(targets)
        for job in jobs:
            if job.result["state"] == "ok" and job.target.type != "pid" and \
                    not job.opener.still_alive(job.handle):
                job.done("ended", message=ENDED_WHILE_READ)
    finally:
        for job in jobs:
            job.close()
    return [job.result for job in jobs]


def compare(views: list) -> dict:
    """Views of one type side by side: {"type", "columns", "rows": [{"label", "values", "same"}]}.

    Rows are the union of every view's field labels, in first-seen order; a
    column without a value (ended, or a field it lacks) has None there.
    """
    types = {v["type"] for v in views}
    if len(types) != 1:
        raise ValueError("compare namespaces of one type at a time (got %s)" % ", ".join(sorted(types)))
    order, by_view = [], []
    for v in views:
        rows = {}
        for label, value in v.get("fields") or []:
            if label not in rows:
                rows[label] = value
                if label not in order:
                    order.append(label)
        by_view.append(rows)
    rows = []
    for label in order:
        values = [r.get(label) for r in by_view]
        present = [x for x in values if x is not None]
        rows.append({"label": label, "values": values,
                     "same": len(present) == len(values) and all(x == present[0] for x in present)})
    columns = [{k: v.get(k) for k in ("id", "type", "inode", "label", "state", "message", "read_via")}
               for v in views]
    return {"type": types.pop(), "columns": columns, "rows": rows}
