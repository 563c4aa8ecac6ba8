"""Podman without its API socket: the few Docker SDK calls the catalog makes, answered by the
`podman` command (`podman inspect`, `podman ps`, `podman events`).

Podman needs no daemon, and its API socket is off by default; this lets nsgraph name
podman's containers on such a host anyway.  Each call starts `podman` (~0.1 s), so
the catalog's caching (one inspect per container and per change) matters; the event
stream is one long-running `podman events` process, stopped by close().
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Optional

TIMEOUT = 20


class PodmanError(Exception):
    pass


def _podman(*args, timeout: float = TIMEOUT) -> str:
    try:
        done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError) as exc:
        raise PodmanError("podman %s: %s" % (args[0], exc)) from exc
    if done.returncode != 0:
        text = (done.stderr or done.stdout).strip().splitlines()
        message = text[-1] if text else "exit status %d" % done.returncode
        if "no such container" in message.lower():
            import docker.errors
            raise docker.errors.NotFound(message)
        raise PodmanError("podman %s: %s" % (args[0], message[:300]))
    return done.stdout


class _Api:
    def inspect_container(self, cid: str) -> dict:
        found = json.loads(_podman("container", "inspect", cid) or "[]")
        if not found:
            import docker.errors
            raise docker.errors.NotFound("no such container %s" % cid)
        return found[0]

    def containers(self, all: bool = False, filters: Optional[dict] = None) -> list:
        args = ["ps", "--format", "json"] + (["--all"] if all else [])
        for key, value in (filters or {}).items():
            args += ["--filter", "%s=%s" % (key, value)]
        return json.loads(_podman(*args) or "[]")


class _Events:
    """`podman events` as the Docker SDK's decoded event stream (iterable, closable)."""

    def __init__(self):
        self._proc = subprocess.Popen(["podman", "events", "--format", "json", "--filter", "type=container"],
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def __iter__(self):
        for line in self._proc.stdout:
            try:
                raw = json.loads(line)
            except ValueError:
                continue
            if isinstance(raw, dict):
                yield {"Type": raw.get("Type", "container"), "Action": raw.get("Status"),
                       "Actor": {"ID": raw.get("ID"), "Attributes": raw.get("Attributes") or {}}}

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc.stdout.close()


class PodmanCli:
    """The subset of docker.DockerClient that ContainerCatalog uses, through the podman command."""

    def __init__(self):
        if shutil.which("podman") is None:
            raise PodmanError("podman is not installed")
        self.api = _Api()

    def ping(self) -> bool:
        _podman("version", "--format", "{{.Client.Version}}")
        return True

    def version(self) -> dict:
        return {"Version": _podman("version", "--format", "{{.Client.Version}}").strip() + " (podman command)"}

    def events(self, decode: bool = True, filters: Optional[dict] = None) -> _Events:
        return _Events()

    def close(self) -> None:
        pass
