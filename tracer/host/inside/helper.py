"""The inside-view helper: a short-lived process that joins namespaces and reads what they contain.

    python -E -S -m tracer.host.inside.helper     (started by tracer/host/inside/spawn.py)

Some of a namespace's bookkeeping is visible only to a process inside it (the
hostname, System V IPC objects, IPv4 addresses).  The server never switches
namespaces itself; it starts this helper instead, with namespace fds it opened
and checked (inherited, never paths) and a small JSON request on stdin that
names only fds and types from a fixed list.  Nothing from an HTTP request
reaches it, it runs no other program and it never touches a file inside a
container: everything is read through the /proc it opened before joining.

For each job the helper joins one namespace with setns(fd, CLONE_NEW<type>)
(the kernel refuses an fd of another type) and runs that type's collect().
Mount namespaces are joined after the others and user namespaces last (joining
one gives up privileges outside it).  Every module is imported, and the import
path emptied, before the first join: after joining a mount namespace, an
import would otherwise read Python files from inside the container.

Output, on stdout: {"results": [{"view": {...}} or {"error": "...", "errno": n}, ...]}
in the order of the jobs.  Exit status 0 when the request was understood.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import os
import sys

from ...exitcodes import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from ...nstypes import TYPE_FLAGS

# type -> the module that reads it (tracer/host/inside/<module>.py); pid is never joined.
MODULES = {"uts": "utsns", "ipc": "ipcns", "net": "netns", "time": "timens",
           "cgroup": "cgroupns", "mnt": "mntns", "user": "userns"}
JOIN_ORDER = ("uts", "ipc", "net", "time", "cgroup", "mnt", "user")
MAX_REQUEST = 65536


class Context:
    """What collect() gets: /proc opened before joining, the namespace fd, extra fds."""

    def __init__(self, proc: int, ns_fd: int, extra: dict):
        self.proc = proc
        self.ns_fd = ns_fd
        self.extra = extra
        self.before = None


def parse_request(raw: bytes) -> list:
    """The jobs of a request, checked: [(index, type, fd, extra)] in join order; ValueError if bad."""
    request = json.loads(raw.decode("utf-8"))
    jobs = request.get("jobs") if isinstance(request, dict) else None
    if not isinstance(jobs, list) or not jobs:
        raise ValueError("the request has no jobs")
    out = []
    for index, job in enumerate(jobs):
        if not isinstance(job, dict) or job.get("type") not in MODULES:
            raise ValueError("job %d: unknown namespace type" % index)
        fds = [job.get("fd")] + list((job.get("extra") or {}).values())
        if not all(isinstance(fd, int) and not isinstance(fd, bool) and fd > 2 for fd in fds):
            raise ValueError("job %d: fds must be inherited descriptors above 2" % index)
        extra = job.get("extra") or {}
        if not all(isinstance(k, str) for k in extra):
            raise ValueError("job %d: malformed extra fds" % index)
        out.append((index, job["type"], job["fd"], dict(extra)))
    if sum(1 for job in out if job[1] == "user") > 1:
        raise ValueError("at most one user namespace per helper")
    return sorted(out, key=lambda job: (JOIN_ORDER.index(job[1]), job[0]))


def _error(exc: BaseException) -> dict:
    if isinstance(exc, OSError):
        where = (": %s" % exc.filename) if exc.filename else ""
        return {"error": (exc.strerror or type(exc).__name__) + where, "errno": exc.errno}
    return {"error": "%s: %s" % (type(exc).__name__, exc)}


def run(jobs: list) -> list:
    modules = {t: importlib.import_module("tracer.host.inside." + MODULES[t]) for _, t, _, _ in jobs}
    libc = ctypes.CDLL(None, use_errno=True)
    proc = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    # From here on nothing may be imported: see the module docstring.
    sys.path[:] = []
    sys.path_importer_cache.clear()
    results = [None] * len(jobs)
    for index, ns_type, fd, extra in jobs:
        module = modules[ns_type]
        ctx = Context(proc, fd, extra)
        try:
            if hasattr(module, "before_join"):
                ctx.before = module.before_join(ctx)
            if libc.setns(fd, TYPE_FLAGS[ns_type]) != 0:
                err = ctypes.get_errno()
                results[index] = {"error": "setns(%s): %s" % (ns_type, os.strerror(err)), "errno": err}
                continue
            results[index] = {"view": module.collect(ctx)}
        except Exception as exc:   # one job's failure is its answer, not the helper's end
            results[index] = _error(exc)
    return results


def main() -> int:
    try:
        jobs = parse_request(sys.stdin.buffer.read(MAX_REQUEST + 1)[:MAX_REQUEST])
    except ValueError as exc:
        sys.stdout.write(json.dumps({"error": "bad request: %s" % exc}))
        return EXIT_USAGE
    try:
        sys.stdout.write(json.dumps({"results": run(jobs)}))
    except BaseException as exc:   # no traceback: printing one reads source files by path
        sys.stdout.write(json.dumps({"error": "the helper failed: %s" % type(exc).__name__}))
        return EXIT_FAILURE
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
