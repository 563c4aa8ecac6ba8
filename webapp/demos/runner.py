"""Running one scenario: containers through the Docker SDK, util-linux through a fixed argv.

No shell ever sees request data: Docker scenarios go through the SDK (no
`docker` CLI), util-linux ones run their argv from the allow-list with
shell=False.  The runner owns what outlives a run: the Docker client and demo
image, the `unshare` sleepers nsenter joins, and the removal of demo containers
(ours, and anyone's expired ones).

Each run records its output (capped), exit code, the host pids it started and
the namespace inodes read from /proc/<pid>/ns while it ran; outcome.py turns
those into graph namespaces.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import threading
import time
from typing import Callable, Optional

from tracer.containers.docker_client import WORK_TIMEOUT, docker_client
from tracer.nstypes import MEMBER_TYPES

from .image import ensure_demo_image
from .run import DemoError, Run
from .scenarios import (DOCKER, EXPIRES_LABEL, LAUNCHER_LABEL, LINGER_S, MYAPP, READY, SCENARIOS,
                        UNSHARE_SLEEP_S,
                        UNSHARE_TYPES, Scenario, container_options, nsenter_argv, nsenter_shown)

CONTAINER_WAIT_S = 60
LOGS_SETTLE_S = 3.0     # how long empty logs of a successful container are read again
NSENTER_TIMEOUT_S = 30
READY_TIMEOUT_S = 10
DOCKER_RECHECK_S = 15.0

Progress = Callable[[str], None]


def default_docker():
    return docker_client(WORK_TIMEOUT, ping=True)


def read_ns_links(pid: int, types=MEMBER_TYPES) -> dict:
    """type -> inode of /proc/<pid>/ns/*; empty when the process is gone."""
    out = {}
    for name in types:
        try:
            link = os.readlink("/proc/%d/ns/%s" % (pid, name))
        except OSError:
            continue
        if link.endswith("]") and ":[" in link:
            try:
                out[name] = int(link[link.index(":[") + 2:-1])
            except ValueError:
                pass
    return out


class DemoRunner:
    def __init__(self, config, instance: str, myapp: str, docker_factory: Optional[Callable] = None):
        self.config = config
        self.instance = instance
        self.myapp = myapp
        self._docker_factory = docker_factory or default_docker
        self._client = None
        self._docker_checked: Optional[tuple] = None     # (monotonic time, problem or None)
        self._image: Optional[str] = None
        self._lock = threading.Lock()
        self._sleepers = []                  # (Popen, expires) of unshare demos

    @property
    def image_name(self) -> Optional[str]:
        """The demo image once known (scenario texts show IMAGE before)."""
        return self._image

    def run(self, scenario: Scenario, run: Run, progress: Progress) -> None:
        """Run to completion, filling in run; raises DemoError (or a Docker error)."""
        if scenario.kind == DOCKER:
            self._run_docker(scenario, run, progress)
        else:
            self._run_util_linux(scenario, run, progress)

    # -- Docker ------------------------------------------------------------------

    def docker(self):
        if self._client is None:
            try:
                self._client = self._docker_factory()
            except Exception as exc:
                raise DemoError("Docker is not reachable (%s): start dockerd (scripts/setup.sh "
                                "starts it) or use the util-linux scenarios" % exc, 503)
        return self._client

    def docker_problem(self) -> Optional[str]:
        """Why the Docker scenarios cannot run now, or None; the engine is asked at most
        every DOCKER_RECHECK_S (the catalogue is read on every page load)."""
        if self._client is not None:
            return None
        now = time.monotonic()
        if self._docker_checked is not None and now - self._docker_checked[0] < DOCKER_RECHECK_S:
            return self._docker_checked[1]
        try:
            self.docker()
            problem = None
        except DemoError as exc:
            problem = str(exc)
        self._docker_checked = (now, problem)
        return problem

    def image(self, progress: Progress) -> str:
        if self._image is None:
            self._image = ensure_demo_image(self.docker(), progress)
        return self._image

    def _run_docker(self, scenario: Scenario, run: Run, progress: Progress) -> None:
        client = self.docker()
        image = self.image(progress)
        run.command = scenario.shown(image, self.myapp)
        if scenario.exec_in_myapp:
            self._exec_myapp(scenario, run, client, image, progress)
            return
        myapp = self._ensure_myapp(run, client, image, progress) if scenario.network == "myapp" else None
        name = "nsgraph-demo-%s-%s" % (scenario.id, run.id)
        opts = container_options(scenario, instance=self.instance, run_id=run.id,
                                 expires=time.time() + (min(LINGER_S, self.config.demo_ttl_s)
                                                         if scenario.linger else self.config.demo_ttl_s),
                                 myapp_container=myapp.id if myapp else None)
        container = client.containers.create(image, list(scenario.argv), name=name, **opts)
        run.container, run.container_id = name, container.id
        lingering = False
        try:
            container.start()
            self._observe_container(run, container)
            if scenario.linger and wait_for_sleep(run.pids[0] if run.pids else 0):
                # The output is complete once the shell exec'd sleep; the reaper removes
                # the container at its expiry label (LINGER_S), the clean-up button sooner.
                lingering = True
                run.exit_code = 0
            else:
                result = container.wait(timeout=CONTAINER_WAIT_S)
                run.exit_code = int(result.get("StatusCode", -1))
            run.append_output(container_output(container, run.exit_code).decode("utf-8", "replace"),
                              self.config.demo_output_cap)
        finally:
            # `docker run --rm`: created, started, waited for and removed by us
            # (auto_remove would race our reading of the logs) -- unless it lingers.
            if not lingering:
                try:
                    container.remove(force=True)
                except Exception:
                    pass
        if run.exit_code != 0 and not run.error:
            run.error = "the container exited with status %s" % run.exit_code

    def _observe_container(self, run: Run, container) -> None:
        try:
            container.reload()
            pid = int(container.attrs.get("State", {}).get("Pid") or 0)
        except Exception:
            return          # gone already: its own output (ls -la /proc/self/ns) still tells
        if pid > 0:
            run.pids.append(pid)
            run.observed_ns = read_ns_links(pid)

    def _ensure_myapp(self, run: Run, client, image: str, progress: Progress):
        import docker.errors
        try:
            container = client.containers.get(self.myapp)
        except docker.errors.NotFound:
            container = None
        if container is not None:
            if LAUNCHER_LABEL not in (container.labels or {}):
                raise DemoError("a container named %r exists and was not started by the demo "
                                "launcher; rename or remove it (docker rm -f %s)"
                                % (self.myapp, self.myapp), 409)
            if container.status != "running":
                progress("starting %s" % self.myapp)
                container.start()
                container.reload()
            return container
        progress("starting %s (docker run -d --name %s %s sleep %d)"
                 % (self.myapp, self.myapp, image, int(self.config.demo_ttl_s)))
        opts = container_options(MYAPP, instance=self.instance, run_id=run.id,
                                 expires=time.time() + self.config.demo_ttl_s)
        container = client.containers.run(image, ["sleep", str(int(self.config.demo_ttl_s))],
                                          name=self.myapp, **opts)
        container.reload()
        return container

    def _exec_myapp(self, scenario: Scenario, run: Run, client, image: str, progress: Progress) -> None:
        container = self._ensure_myapp(run, client, image, progress)
        run.container = self.myapp
        pid = int(container.attrs.get("State", {}).get("Pid") or 0)
        if pid > 0:
            run.observed_ns = read_ns_links(pid)
        # The low-level calls, not exec_run: exec_inspect gives the exec'd command's host
        # pid, which is how the graph's join session is matched to this run.
        api = client.api
        exec_id = api.exec_create(container.id, list(scenario.argv), stdout=True, stderr=True)["Id"]
        output = api.exec_start(exec_id) or b""
        info = api.exec_inspect(exec_id)
        if info.get("Pid"):
            run.pids.append(int(info["Pid"]))
        exit_code = info.get("ExitCode")
        run.exit_code = int(exit_code) if exit_code is not None else -1
        run.append_output(output.decode("utf-8", "replace"), self.config.demo_output_cap)

    def remove_containers(self, expired_only: bool = False) -> tuple:
        """Remove our demo containers (all of them, or the expired ones) and anyone's expired
        ones; (removed names, errors)."""
        removed, errors = [], []
        try:
            client = self.docker()
        except DemoError as exc:
            return removed, [str(exc)]
        try:
            containers = client.containers.list(all=True, filters={"label": LAUNCHER_LABEL})
        except Exception as exc:
            return removed, ["listing containers failed: %s" % exc]
        now = time.time()
        for c in containers:
            labels = c.labels or {}
            try:
                expiry = float(labels.get(EXPIRES_LABEL, "0"))
            except ValueError:
                expiry = 0.0
            ours = labels.get(LAUNCHER_LABEL) == self.instance
            if (ours and not expired_only) or expiry <= now:
                try:
                    c.remove(force=True)
                    removed.append(c.name)
                except Exception as exc:
                    errors.append("removing %s failed: %s" % (c.name, exc))
        return removed, errors

    # -- util-linux ------------------------------------------------------------------

    def _run_util_linux(self, scenario: Scenario, run: Run, progress: Progress) -> None:
        if os.geteuid() != 0:
            raise DemoError("util-linux demos need root (unshare --net); run nsgraph serve as root", 403)
        if scenario.id == "unshare-uts-net-pid":
            self._start_unshare(run, list(scenario.argv))
            return
        target = self._unshare_target()
        if target is None:
            progress("no unshare demo is running: starting one")
            helper = Run(id=run.id + "-u", scenario="unshare-uts-net-pid", command="")
            self._start_unshare(helper, list(SCENARIOS["unshare-uts-net-pid"].argv))
            target = self._unshare_target()
            if target is None:
                raise DemoError("the unshare demo did not start: %s" % (helper.error or helper.output), 500)
        run.command = nsenter_shown(target)
        run.observed_ns = read_ns_links(target, UNSHARE_TYPES)
        proc = subprocess.Popen(nsenter_argv(target), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, shell=False)
        run.pids.append(proc.pid)       # nsenter itself calls setns: the join session's pid
        try:
            out, _ = proc.communicate(timeout=NSENTER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            run.append_output(out.decode("utf-8", "replace"), self.config.demo_output_cap)
            raise DemoError("nsenter did not finish within %d s" % NSENTER_TIMEOUT_S, 500)
        run.exit_code = proc.returncode
        run.append_output(out.decode("utf-8", "replace"), self.config.demo_output_cap)

    def _start_unshare(self, run: Run, argv: list) -> None:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, shell=False, start_new_session=True)
        with self._lock:
            self._sleepers.append((proc, time.time() + min(self.config.demo_ttl_s, UNSHARE_SLEEP_S)))
        run.pids.append(proc.pid)
        # The shell prints READY and then execs sleep, which keeps stdout open: read
        # up to the marker rather than to end of file.
        buf = b""
        deadline = time.time() + READY_TIMEOUT_S
        while READY.encode() not in buf and time.time() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.2)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                buf += chunk
        text = buf.decode("utf-8", "replace")
        cap = self.config.demo_output_cap
        if READY not in text:
            run.append_output(text, cap)
            run.exit_code = proc.poll() if proc.poll() is not None else -1
            raise DemoError("unshare did not reach its shell within %d s: %s"
                            % (READY_TIMEOUT_S, text.strip()), 500)
        run.append_output(text.split(READY)[0], cap)
        child = child_of(proc.pid)
        if child:
            run.pids.append(child)
            run.observed_ns = read_ns_links(child, UNSHARE_TYPES)
        run.exit_code = 0

    def _unshare_target(self) -> Optional[int]:
        with self._lock:
            sleepers = [p for p, _ in self._sleepers if p.poll() is None]
        for proc in reversed(sleepers):
            child = child_of(proc.pid)
            if child:
                return child
        return None

    def sleepers_alive(self) -> int:
        with self._lock:
            return sum(1 for p, _ in self._sleepers if p.poll() is None)

    def stop_sleepers(self, expired_only: bool = False) -> None:
        now = time.time()
        with self._lock:
            keep = []
            for proc, expires in self._sleepers:
                if proc.poll() is None and (not expired_only or expires <= now):
                    kill_group(proc)
                elif proc.poll() is None:
                    keep.append((proc, expires))
            self._sleepers = keep


def child_of(pid: int) -> Optional[int]:
    """The (first) child of pid, from /proc: unshare --fork's process in the new namespaces."""
    deadline = time.time() + 2
    while time.time() < deadline:
        try:
            with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
                kids = [int(x) for x in f.read().split()]
        except (OSError, ValueError):
            return None
        if kids:
            return kids[0]
        time.sleep(0.02)
    return None


def container_output(container, exit_code: Optional[int], settle_s: float = LOGS_SETTLE_S) -> bytes:
    """The container's stdout and stderr once it has exited or lingers.

    dockerd can answer `wait` before its log copier has written the last of a
    short-lived container's output (it gives the copier 2 s when the host is
    busy), so empty logs from a container that succeeded are read again for a
    bounded moment before they are believed.
    """
    output = container.logs(stdout=True, stderr=True)
    deadline = time.monotonic() + settle_s
    while not output and exit_code == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
        output = container.logs(stdout=True, stderr=True)
    return output


def wait_for_sleep(pid: int, timeout: float = CONTAINER_WAIT_S) -> bool:
    """True once process pid runs `sleep` (a lingering demo's shell exec'd it); False if it exits."""
    deadline = time.time() + timeout
    while pid > 0 and time.time() < deadline:
        try:
            with open("/proc/%d/comm" % pid) as f:
                if f.read().strip() == "sleep":
                    return True
        except OSError:
            return False
        time.sleep(0.02)
    return False


def kill_group(proc: subprocess.Popen) -> None:
    # start_new_session made the demo the leader of its own process group.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=2)
    except subprocess.TimeoutExpired:
        pass
    if proc.stdout is not None:
        proc.stdout.close()
