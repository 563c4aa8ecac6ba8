"""A real podman for the tests: its Docker-API service on a socket of the test's own, and
the demo image brought over from Docker (no registry here: `docker save | podman load`).

podman runs here only with lower rlimits (the sandbox lacks CAP_SYS_RESOURCE, so the
runtime cannot raise them): every `podman run` of the tests passes RUN_LIMITS.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

RUN_LIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")


def podman(*args, check=True, timeout=120) -> str:
    return subprocess.run(["podman", *args], check=check, capture_output=True, text=True,
                          timeout=timeout).stdout.strip()


def podman_run(*args) -> str:
    """`podman run -d ARGS`: the new container's id."""
    return podman("run", "-d", *RUN_LIMITS, *args)


def load_image(docker_image: str) -> str:
    """The Docker image `docker_image`, loaded into podman (once); podman's name for it."""
    wanted = "localhost/" + docker_image if "/" not in docker_image.split(":")[0] else docker_image
    if subprocess.run(["podman", "image", "exists", docker_image], capture_output=True).returncode != 0:
        save = subprocess.Popen(["docker", "save", docker_image], stdout=subprocess.PIPE)
        try:
            subprocess.run(["podman", "load"], stdin=save.stdout, check=True, capture_output=True, timeout=300)
        finally:
            save.stdout.close()
            save.wait()
    return docker_image if subprocess.run(["podman", "image", "exists", docker_image],
                                          capture_output=True).returncode == 0 else wanted


class PodmanService:
    """`podman system service --time=0 unix://SOCK`, stopped and reaped by close()."""

    def __init__(self, directory: str):
        self.socket = os.path.join(directory, "podman.sock")
        self.log = open(os.path.join(directory, "podman-service.log"), "w")
        self.proc = subprocess.Popen(["podman", "system", "service", "--time=0", "unix://" + self.socket],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError("podman system service did not open %s (see %s)" % (self.socket, self.log.name))
            time.sleep(0.05)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def podman_available() -> bool:
    return shutil.which("podman") is not None
