"""Container engines' own namespace switches ("housekeeping"), told apart from joins.

Every `docker run` makes dockerd enter the new container's net namespace (to set
up its interfaces) and return to its own; containerd, its shims, podman's
netavark and conmon do the same kind of work.  These setns calls are real and
stay recorded, but they are not someone joining a container: join sessions
carry the reason (`JoinJSON.housekeeping`), the Graph JSON's join list and the
default `nsgraph trace` view leave them out, and `/api/graph?housekeeping=1`
or `nsgraph trace --housekeeping` show them.

Two kinds, decided from what the kernel reports (the same live and replayed):
  "engine"          the calling task is an engine daemon (its comm below);
  "container start" a runtime (runc, crun) that joins existing namespaces
                    while it makes new ones: a container being created with
                    `--network/--pid/--ipc container:X` (the sharing shows in
                    the namespace's sharers).  `docker exec`'s runc makes none
                    (its unshare(0) asks for nothing), so it stays a join.
"""

from __future__ import annotations

from typing import Optional

ENGINE = "engine"
CONTAINER_START = "container start"

# comm (the kernel keeps 15 characters) of engine daemons and their helpers.
ENGINE_COMMS = frozenset({
    "dockerd", "containerd", "containerd-shim", "docker-proxy", "buildkitd",
    "podman", "conmon", "netavark", "aardvark-dns", "slirp4netns", "pasta", "rootlessport",
    "crio", "conmonrs", "kubelet", "lxd", "incusd", "systemd-nspawn",
})
RUNTIME_TOOLS = frozenset({"runc", "crun", "youki", "runsc"})


def engine_comm(comm: Optional[str]) -> bool:
    """The task is one of the container engines' own daemons."""
    return bool(comm) and comm in ENGINE_COMMS


def of_event(ev) -> Optional[str]:
    """The housekeeping reason a single trace event shows by itself (trace's default
    view hides it), or None.  Only an engine daemon's own setns: a runtime's calls
    during `docker run` are shown (they make the container)."""
    return ENGINE if ev.kind == "setns" and engine_comm(ev.comm) else None


def of_session_start(comm: str) -> Optional[str]:
    """The reason a join session is housekeeping from its first setns, or None."""
    return ENGINE if engine_comm(comm) else None


def makes_namespaces(tool: str, ev) -> Optional[str]:
    """CONTAINER_START when a runtime in a session asks for new namespaces (an unshare
    or clone with CLONE_NEW* flags), else None."""
    if tool in RUNTIME_TOOLS and ev.flag_ns_types():
        return CONTAINER_START
    return None
