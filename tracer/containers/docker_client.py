"""The one way nsgraph makes a Docker engine client, with one timeout policy.

Timeouts are per HTTP request to the engine (the SDK's `timeout`), chosen by what
the caller asks of it:
  QUERY_TIMEOUT  reading state: ping, version, inspect, list, the event streams
                 (container catalog, `docker exec` hints, `nsgraph doctor`)
  WORK_TIMEOUT   making things: importing an image, creating and running containers
                 (`nsgraph demo-image`, the dashboard's demos), which a busy engine
                 can take a while to answer
DOCKER_HOST and the other DOCKER_* variables are honoured (docker.from_env).
The SDK is imported here, lazily: nothing needs it until a client is made.
"""

from __future__ import annotations

QUERY_TIMEOUT = 10
WORK_TIMEOUT = 120


def docker_client(timeout: float = QUERY_TIMEOUT, *, ping: bool = False):
    """A client for the engine DOCKER_HOST (or the default socket) names; `ping` checks it answers."""
    import docker
    client = docker.from_env(timeout=timeout)
    if ping:
        client.ping()
    return client


# Podman serves the Docker API on its own socket (`podman system service`, or systemd's
# podman.socket); the rootful default path, or NSGRAPH_PODMAN_SOCKET (a path or unix://...).
PODMAN_SOCKET = "/run/podman/podman.sock"


def podman_socket() -> str:
    import os
    path = os.environ.get("NSGRAPH_PODMAN_SOCKET") or PODMAN_SOCKET
    return path[len("unix://"):] if path.startswith("unix://") else path


def podman_client(timeout: float = QUERY_TIMEOUT, *, ping: bool = False):
    """A Docker SDK client on podman's API socket (the same timeout policy); when the default
    socket is absent (podman's service is off by default), the `podman` command standing in
    for the calls the catalog makes (podman_cli.py)."""
    import os
    if not os.environ.get("NSGRAPH_PODMAN_SOCKET") and not os.path.exists(podman_socket()):
        from .podman_cli import PodmanCli
        client = PodmanCli()
    else:
        import docker
        client = docker.DockerClient(base_url="unix://" + podman_socket(), timeout=timeout)
    if ping:
        client.ping()
    return client
