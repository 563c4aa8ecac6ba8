"""The demo launcher: a fixed allow-list of scenarios, run without a shell.

Requests choose a scenario by id and nothing else: image, command, mounts and
flags all come from the SCENARIOS table below.  Docker scenarios go through the
Docker SDK (no `docker` CLI, no shell); util-linux scenarios run a fixed argv
with subprocess (shell=False).  Every demo container carries our labels,
memory/pids limits, no capabilities, a read-only root and no-new-privileges,
and an expiry time after which the reaper removes it.

A run records the command shown to the user, its output (capped), status,
times, and the namespaces it created or joined.  Namespaces are looked up in
the live graph (by container, by join session, by the inodes captured from
/proc/<pid>/ns while the demo ran) so the page can highlight them.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import select
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Optional

from tracer.containers.docker_client import WORK_TIMEOUT, docker_client
from tracer.nstypes import MEMBER_TYPES

log = logging.getLogger(__name__)

LAUNCHER_LABEL = "org.nsgraph.launcher"      # value: the server instance id
SCENARIO_LABEL = "org.nsgraph.scenario"
RUN_LABEL = "org.nsgraph.run"
EXPIRES_LABEL = "org.nsgraph.expires"        # epoch seconds, honoured by any instance's reaper
DEMO_LABEL = "org.nsgraph.demo"              # also set by the demo image itself

READY = "__NSGRAPH_READY__"
UNSHARE_SLEEP_S = 120
CONTAINER_WAIT_S = 60
MAX_RUNS_KEPT = 200


class DemoError(Exception):
    """A demo cannot start; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400, retry_after: Optional[int] = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    description: str
    command: str                 # what the user sees ({image}, {myapp} filled in)
    kind: str                    # "docker" or "util-linux"
    argv: tuple = ()             # the container command or the host argv
    network: Optional[str] = None    # "myapp": share myapp's network namespace
    pid_mode: Optional[str] = None   # "host"
    exec_in_myapp: bool = False

    def public(self, image: str, myapp: str) -> dict:
        return {"id": self.id, "title": self.title,
                "description": self.description.format(image=image or "IMAGE", myapp=myapp),
                "command": self.shown(image, myapp), "kind": self.kind}

    def shown(self, image: str, myapp: str) -> str:
        return self.command.format(image=image or "IMAGE", myapp=myapp)


_UNSHARE_SCRIPT = ("hostname nsgraph-uts-demo; hostname; ip -brief addr; "
                   "readlink /proc/self/ns/uts /proc/self/ns/net /proc/self/ns/pid; "
                   "echo %s; exec sleep %d" % (READY, UNSHARE_SLEEP_S))
_NSENTER_SCRIPT = "hostname; ip -brief addr; readlink /proc/self/ns/uts /proc/self/ns/net /proc/self/ns/pid"

SCENARIOS = {s.id: s for s in (
    Scenario("ls-ns", "A container's namespace links",
             "A new container gets its own cgroup, ipc, mnt, net, pid and uts namespaces: "
             "the inode numbers differ from the host's.",
             "docker run --rm {image} ls -la /proc/self/ns/", "docker",
             argv=("ls", "-la", "/proc/self/ns/")),
    Scenario("hostname-ip-ps", "Hostname, network and processes inside a container",
             "The uts namespace gives it its own hostname, the net namespace its own interfaces, "
             "the pid namespace a process list that starts at 1.",
             'docker run --rm {image} sh -c "hostname; ip addr; ps aux"', "docker",
             argv=("sh", "-c", "hostname; ip addr; ps aux")),
    Scenario("exec-myapp", "docker exec into a running container",
             "Starts the long-running container {myapp} if needed, then `docker exec` joins its "
             "ipc, uts, net, pid and mnt namespaces (runc calls setns five times): the output is "
             "the container's own process list.",
             "docker exec {myapp} ps aux", "docker", argv=("ps", "aux"), exec_in_myapp=True),
    Scenario("shared-net", "A container sharing another's network namespace",
             "--network container:{myapp} puts the new container in {myapp}'s net namespace: "
             "same interfaces and address, its own other namespaces.",
             'docker run --rm --network container:{myapp} {image} sh -c "ip addr; ls -la /proc/self/ns/"',
             "docker", argv=("sh", "-c", "ip addr; ls -la /proc/self/ns/"), network="myapp"),
    Scenario("host-pid", "A container in the host's PID namespace",
             "--pid host skips the new pid namespace: ps sees every process of the host.",
             'docker run --rm --pid host {image} sh -c "ls -la /proc/self/ns/; ps aux"',
             "docker", argv=("sh", "-c", "ls -la /proc/self/ns/; ps aux"), pid_mode="host"),
    Scenario("unshare-uts-net-pid", "unshare: new uts, net and pid namespaces without Docker",
             "util-linux unshare creates three namespaces and runs a shell in them that renames "
             "the host and then sleeps %d s, so nsenter can join it." % UNSHARE_SLEEP_S,
             "unshare --uts --net --pid --fork --kill-child sh -c '%s'" % _UNSHARE_SCRIPT,
             "util-linux",
             argv=("unshare", "--uts", "--net", "--pid", "--fork", "--kill-child", "sh", "-c",
                   _UNSHARE_SCRIPT)),
    Scenario("nsenter-join", "nsenter: join the unshare demo's namespaces",
             "nsenter calls setns on the uts, net and pid namespaces of the unshare demo's "
             "process (started first if none runs) and runs a shell there.",
             "nsenter --target PID --uts --net --pid sh -c '%s'" % _NSENTER_SCRIPT, "util-linux",
             argv=("sh", "-c", _NSENTER_SCRIPT)),
)}


def container_options(scenario: Scenario, *, instance: str, run_id: str, expires: float,
                      myapp_container: Optional[str] = None) -> dict:
    """Docker SDK create() keyword arguments: the only place limits are set."""
    opts = {
        "labels": {LAUNCHER_LABEL: instance, SCENARIO_LABEL: scenario.id, RUN_LABEL: run_id,
                   EXPIRES_LABEL: str(int(expires)), DEMO_LABEL: "1"},
        "mem_limit": "64m",
        "memswap_limit": "64m",
        "pids_limit": 64,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "read_only": True,
        "nano_cpus": 500_000_000,
        "detach": True,
    }
    if scenario.network == "myapp":
        opts["network_mode"] = "container:%s" % myapp_container
    if scenario.pid_mode == "host":
        opts["pid_mode"] = "host"
    return opts


def read_ns_links(pid: int) -> dict:
    """type -> inode of /proc/<pid>/ns/*; empty when the process is gone."""
    out = {}
    for name in MEMBER_TYPES:
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


@dataclass
class Run:
    id: str
    scenario: str
    command: str
    status: str = "queued"          # queued, running, succeeded, failed
    output: str = ""
    truncated: bool = False
    exit_code: Optional[int] = None
    error: Optional[str] = None
    created: float = field(default_factory=time.time)
    started: Optional[float] = None
    ended: Optional[float] = None
    container: Optional[str] = None
    container_id: Optional[str] = None     # Docker's full id (the graph may know only its prefix)
    pids: list = field(default_factory=list)
    # Namespace inodes read from /proc while the demo ran: type -> inode.
    observed_ns: dict = field(default_factory=dict)
    joined_observed: bool = False   # the observed namespaces were joined, not created
    progress: list = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.status in ("queued", "running")


class DemoManager:
    def __init__(self, config, instance: Optional[str] = None,
                 docker_factory: Optional[Callable] = None,
                 notify: Optional[Callable[[dict], None]] = None,
                 graph_json_fn: Optional[Callable[[], Optional[dict]]] = None,
                 myapp_name: str = "myapp"):
        self.config = config
        self.instance = instance or uuid.uuid4().hex[:12]
        self._docker_factory = docker_factory or _default_docker
        self._client = None
        self._docker_checked: Optional[tuple] = None     # (monotonic time, problem or None)
        self._image: Optional[str] = None
        self.notify = notify or (lambda run: None)
        self.graph_json_fn = graph_json_fn    # the graph JSON (cached per version by WebState)
        self.myapp = myapp_name
        self._lock = threading.RLock()
        self._runs: "collections.OrderedDict[str, Run]" = collections.OrderedDict()
        self._launches = collections.deque()
        self._sleepers = []                  # (Popen, expires)
        self._reaper: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self.counters = collections.Counter()

    # -- catalogue -------------------------------------------------------------

    def scenarios(self) -> list:
        image = self._image or "IMAGE"
        out = []
        for s in SCENARIOS.values():
            item = s.public(image, self.myapp)
            item["available"], item["why"] = self._available(s)
            out.append(item)
        return out

    def _available(self, scenario: Scenario):
        if self.config.read_only:
            return False, "the server runs with --read-only"
        if scenario.kind == "util-linux":
            if os.geteuid() != 0:
                return False, "needs root (unshare --net)"
            return True, None
        problem = self._docker_problem()
        if problem:
            return False, problem
        return True, None

    def _docker_problem(self) -> Optional[str]:
        """Why the Docker scenarios cannot run now, or None; asked at most every 15 s."""
        if self._client is not None:
            return None
        now = time.monotonic()
        if self._docker_checked is not None and now - self._docker_checked[0] < 15:
            return self._docker_checked[1]
        try:
            self.docker()
            problem = None
        except DemoError as exc:
            problem = str(exc)
        self._docker_checked = (now, problem)
        return problem

    # -- launching ---------------------------------------------------------------

    def launch(self, scenario_id: str) -> Run:
        """Validate, admit and start a run in a worker thread; raises DemoError."""
        if self.config.read_only:
            raise DemoError("the demo launcher is disabled: nsgraph serve runs with --read-only "
                            "(restart it without --read-only to launch demos)", 403)
        scenario = SCENARIOS.get(scenario_id) if isinstance(scenario_id, str) else None
        if scenario is None:
            raise DemoError("unknown scenario %r; GET /api/demos lists the ids: %s"
                            % (scenario_id, ", ".join(SCENARIOS)), 400)
        now = time.time()
        with self._lock:
            active = sum(1 for r in self._runs.values() if r.active)
            if active >= self.config.max_concurrent_demos:
                self.counters["refused_busy"] += 1
                raise DemoError("%d demos are already running (the cap is %d): wait for one to "
                                "finish" % (active, self.config.max_concurrent_demos), 429, 5)
            window = self.config.demo_rate_window_s
            while self._launches and self._launches[0] <= now - window:
                self._launches.popleft()
            if len(self._launches) >= self.config.demo_rate:
                self.counters["refused_rate"] += 1
                retry = int(self._launches[0] + window - now) + 1
                raise DemoError("rate limit: %d demos per %d s; try again in %d s"
                                % (self.config.demo_rate, window, retry), 429, retry)
            self._launches.append(now)
            run = Run(id=uuid.uuid4().hex[:12], scenario=scenario.id,
                      command=scenario.shown(self._image or "IMAGE", self.myapp))
            self._runs[run.id] = run
            while len(self._runs) > MAX_RUNS_KEPT:
                oldest = next(iter(self._runs))
                if self._runs[oldest].active:
                    break
                self._runs.pop(oldest)
            self.counters["started"] += 1
        self._ensure_reaper()
        threading.Thread(target=self._execute, args=(scenario, run), daemon=True,
                         name="nsgraph-demo-%s" % run.id).start()
        return run

    def _execute(self, scenario: Scenario, run: Run) -> None:
        run.status = "running"
        run.started = time.time()
        self._notify(run)
        try:
            if scenario.kind == "docker":
                self._run_docker(scenario, run)
            else:
                self._run_util_linux(scenario, run)
            run.status = "succeeded" if run.exit_code == 0 else "failed"
        except DemoError as exc:
            run.error = str(exc)
            run.status = "failed"
        except Exception as exc:  # Docker API errors and the like: reported, not raised
            log.exception("demo %s failed", run.id)
            run.error = "%s: %s" % (type(exc).__name__, exc)
            run.status = "failed"
        finally:
            run.ended = time.time()
            if run.status == "failed":
                self.counters["failed"] += 1
            else:
                self.counters["succeeded"] += 1
            self._notify(run)

    def _append_output(self, run: Run, text: str) -> None:
        cap = self.config.demo_output_cap
        room = cap - len(run.output)
        if room <= 0:
            run.truncated = run.truncated or bool(text)
            return
        if len(text) > room:
            text = text[:room]
            run.truncated = True
        run.output += text

    def _progress(self, run: Run, message: str) -> None:
        run.progress.append(message)
        self._notify(run)

    def _notify(self, run: Run) -> None:
        try:
            self.notify(self.run_json(run.id))
        except Exception:
            log.exception("demo notification failed")

    # -- Docker ------------------------------------------------------------------

    def docker(self):
        if self._client is None:
            try:
                self._client = self._docker_factory()
            except Exception as exc:
                raise DemoError("Docker is not reachable (%s): start dockerd (scripts/setup.sh "
                                "starts it) or use the util-linux scenarios" % exc, 503)
        return self._client

    def image(self, run: Optional[Run] = None) -> str:
        if self._image is None:
            client = self.docker()
            try:
                from .image import ensure_demo_image
            except ImportError as exc:
                raise DemoError("webapp.demos.image is missing (%s); reinstall nsgraph" % exc, 500)
            progress = (lambda m: self._progress(run, m)) if run is not None else (lambda m: None)
            self._image = ensure_demo_image(client, progress)
        return self._image

    def _run_docker(self, scenario: Scenario, run: Run) -> None:
        client = self.docker()
        image = self.image(run)
        run.command = scenario.shown(image, self.myapp)
        if scenario.exec_in_myapp:
            return self._exec_myapp(scenario, run, client, image)
        myapp = None
        if scenario.network == "myapp":
            myapp = self._ensure_myapp(run, client, image)
        expires = time.time() + self.config.demo_ttl_s
        name = "nsgraph-demo-%s-%s" % (scenario.id, run.id)
        opts = container_options(scenario, instance=self.instance, run_id=run.id,
                                 expires=expires, myapp_container=myapp.id if myapp else None)
        container = client.containers.create(image, list(scenario.argv), name=name, **opts)
        run.container, run.container_id = name, container.id
        try:
            container.start()
            self._observe_container(run, container)
            result = container.wait(timeout=CONTAINER_WAIT_S)
            run.exit_code = int(result.get("StatusCode", -1))
            logs = container.logs(stdout=True, stderr=True)
            self._append_output(run, logs.decode("utf-8", "replace"))
        finally:
            # `docker run --rm`: created, started, waited for and removed by us
            # (auto_remove would race our reading of the logs).
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
            return
        if pid > 0:
            run.pids.append(pid)
            run.observed_ns = read_ns_links(pid)

    def _ensure_myapp(self, run: Run, client, image: str):
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
                self._progress(run, "starting %s" % self.myapp)
                container.start()
                container.reload()
            return container
        self._progress(run, "starting %s (docker run -d --name %s %s sleep %d)"
                       % (self.myapp, self.myapp, image, int(self.config.demo_ttl_s)))
        scenario = Scenario("myapp", "", "", "", "docker")
        opts = container_options(scenario, instance=self.instance, run_id=run.id,
                                 expires=time.time() + self.config.demo_ttl_s)
        container = client.containers.run(image, ["sleep", str(int(self.config.demo_ttl_s))],
                                          name=self.myapp, **opts)
        container.reload()
        return container

    def _exec_myapp(self, scenario: Scenario, run: Run, client, image: str) -> None:
        container = self._ensure_myapp(run, client, image)
        run.container = self.myapp
        pid = int(container.attrs.get("State", {}).get("Pid") or 0)
        if pid > 0:
            run.observed_ns = read_ns_links(pid)
            run.joined_observed = True
        result = container.exec_run(list(scenario.argv), stdout=True, stderr=True)
        run.exit_code = int(result.exit_code if result.exit_code is not None else -1)
        self._append_output(run, (result.output or b"").decode("utf-8", "replace"))

    # -- util-linux ------------------------------------------------------------------

    def _run_util_linux(self, scenario: Scenario, run: Run) -> None:
        if os.geteuid() != 0:
            raise DemoError("util-linux demos need root (unshare --net); run nsgraph serve as root", 403)
        if scenario.id == "unshare-uts-net-pid":
            self._start_unshare(run, list(scenario.argv))
            return
        target = self._unshare_target()
        if target is None:
            self._progress(run, "no unshare demo is running: starting one")
            helper = Run(id=run.id + "-u", scenario="unshare-uts-net-pid", command="")
            self._start_unshare(helper, list(SCENARIOS["unshare-uts-net-pid"].argv))
            target = self._unshare_target()
            if target is None:
                raise DemoError("the unshare demo did not start: %s" % (helper.error or helper.output), 500)
        argv = ["nsenter", "--target", str(target), "--uts", "--net", "--pid"] + list(scenario.argv)
        run.command = "nsenter --target %d --uts --net --pid sh -c '%s'" % (target, _NSENTER_SCRIPT)
        run.observed_ns = {k: v for k, v in read_ns_links(target).items() if k in ("uts", "net", "pid")}
        run.joined_observed = True
        run.pids.append(target)
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=30, shell=False)
        run.exit_code = proc.returncode
        self._append_output(run, proc.stdout.decode("utf-8", "replace"))

    def _start_unshare(self, run: Run, argv: list) -> None:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, shell=False, start_new_session=True)
        with self._lock:
            self._sleepers.append((proc, time.time() + min(self.config.demo_ttl_s, UNSHARE_SLEEP_S)))
        run.pids.append(proc.pid)
        # The shell prints READY and then execs sleep, which keeps stdout open: read
        # up to the marker rather than to end of file.
        buf = b""
        deadline = time.time() + 10
        while READY.encode() not in buf and time.time() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.2)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                buf += chunk
        text = buf.decode("utf-8", "replace")
        if READY not in text:
            self._append_output(run, text)
            run.exit_code = proc.poll() if proc.poll() is not None else -1
            raise DemoError("unshare did not reach its shell within 10 s: %s" % text.strip(), 500)
        self._append_output(run, text.split(READY)[0])
        child = _child_of(proc.pid)
        if child:
            run.pids.append(child)
            run.observed_ns = {k: v for k, v in read_ns_links(child).items() if k in ("uts", "net", "pid")}
        run.exit_code = 0

    def _unshare_target(self) -> Optional[int]:
        with self._lock:
            sleepers = [p for p, _ in self._sleepers if p.poll() is None]
        for proc in reversed(sleepers):
            child = _child_of(proc.pid)
            if child:
                return child
        return None

    # -- reading runs -------------------------------------------------------------------

    def get(self, run_id: str) -> Optional[Run]:
        with self._lock:
            return self._runs.get(run_id)

    def run_json(self, run_id: str) -> Optional[dict]:
        run = self.get(run_id)
        if run is None:
            return None
        out = {
            "id": run.id, "run_id": run.id, "scenario": run.scenario, "command": run.command,
            "status": run.status, "output": run.output, "truncated": run.truncated,
            "exit_code": run.exit_code, "error": run.error, "created": run.created,
            "started": run.started, "ended": run.ended, "container": run.container,
            "pids": list(run.pids), "observed_ns": dict(run.observed_ns),
            "progress": list(run.progress),
        }
        out.update(namespaces_for_run(run, self._graph_json()))
        return out

    def _graph_json(self) -> Optional[dict]:
        if self.graph_json_fn is None:
            return None
        try:
            return self.graph_json_fn()
        except Exception:
            log.exception("graph lookup for a demo run failed")
            return None

    def stats(self) -> dict:
        with self._lock:
            running = sum(1 for r in self._runs.values() if r.active)
        return {"started": self.counters["started"], "running": running,
                "failed": self.counters["failed"], "succeeded": self.counters["succeeded"],
                "refused_busy": self.counters["refused_busy"],
                "refused_rate": self.counters["refused_rate"],
                "sleepers": sum(1 for p, _ in self._sleepers if p.poll() is None)}

    # -- cleaning up ------------------------------------------------------------------

    def cleanup(self, expired_only: bool = False) -> dict:
        """Remove our demo containers (and anyone's expired ones) and stop our sleepers."""
        removed, errors = [], []
        now = time.time()
        with self._lock:
            keep = []
            for proc, expires in self._sleepers:
                if proc.poll() is None and (not expired_only or expires <= now):
                    _kill_group(proc)
                elif proc.poll() is None:
                    keep.append((proc, expires))
            self._sleepers = keep
        client = None
        try:
            client = self.docker()
        except DemoError as exc:
            errors.append(str(exc))
        if client is not None:
            try:
                containers = client.containers.list(all=True, filters={"label": LAUNCHER_LABEL})
            except Exception as exc:
                containers = []
                errors.append("listing containers failed: %s" % exc)
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
        self.counters["cleaned"] += len(removed)
        return {"removed": removed, "errors": errors}

    def _ensure_reaper(self) -> None:
        with self._lock:
            if self._reaper is not None:
                return
            self._reaper = threading.Thread(target=self._reap, daemon=True, name="nsgraph-demo-reaper")
            self._reaper.start()

    def _reap(self) -> None:
        while not self._stop.wait(15):
            try:
                self.cleanup(expired_only=True)
            except Exception:
                log.exception("demo reaper step failed")

    def stop(self) -> None:
        """Server shutdown: stop the reaper and every sleeper we started."""
        self._stop.set()
        with self._lock:
            for proc, _ in self._sleepers:
                if proc.poll() is None:
                    _kill_group(proc)
            self._sleepers = []


def _default_docker():
    return docker_client(WORK_TIMEOUT, ping=True)


def _child_of(pid: int) -> Optional[int]:
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


def _kill_group(proc: subprocess.Popen) -> None:
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


# -- the namespaces a run created or joined, from the graph -------------------------------

_LS_LINK = re.compile(r"(\w+) -> (\w+):\[(\d+)\]")
_READLINK = re.compile(r"^(\w+):\[(\d+)\]$", re.M)


def links_in_output(output: str) -> dict:
    """type -> inode printed by `ls -la /proc/self/ns/` or `readlink /proc/self/ns/X`.

    The demo's own report of its namespaces: a `docker run --rm` container is
    usually gone before /proc/<pid>/ns can be read from outside.
    """
    out = {}
    for name, kind, inode in _LS_LINK.findall(output or ""):
        if name == kind and kind in MEMBER_TYPES:
            out[kind] = int(inode)
    for kind, inode in _READLINK.findall(output or ""):
        if kind in MEMBER_TYPES:
            out.setdefault(kind, int(inode))
    return out


def namespaces_for_run(run: Run, graph: Optional[dict]) -> dict:
    """{"namespaces": {"created": [...], "joined": [...]}, "joins": [...]} from graph JSON.

    Which namespaces: those whose creator ran in the run's own container (the
    cgroup the kernel saw at the creating call names it, so a container gone at once,
    like hostname-ip-ps's, keeps them however many demos run at the same time); those
    the graph attributes to the container; the inodes read from /proc while it ran or
    printed in its output, matched by (type, inode) to the graph namespace alive during
    the run (inodes are recycled); the targets of join sessions into them during the
    run.  Which were created: those the graph saw created during the run; the others
    were joined (myapp's).  The host's own namespaces, which a container shares unless
    told otherwise (user, time, cgroup on cgroup v1, pid with --pid host), are neither:
    nothing was created or joined there.
    """
    created, joined, joins = [], [], []
    empty = {"namespaces": {"created": created, "joined": joined}, "joins": joins}
    if not graph:
        return empty
    host_ids = set((graph.get("host_ns") or {}).values())
    spaces = [n for n in graph.get("namespaces", []) if isinstance(n, dict) and n.get("id")]
    by_id = {n["id"]: n for n in spaces}
    start = (run.started or run.created) - 0.5
    end = (run.ended or time.time()) + 0.5

    def during(ns) -> bool:
        created_at = ns.get("created") or 0.0
        ended_at = ns.get("ended")
        return created_at <= end and (ended_at is None or ended_at >= start)

    index = {}
    for ns in spaces:
        index.setdefault((ns.get("type"), ns.get("inode")), []).append(ns)

    ids = []
    name = run.container
    exec_run = run.scenario in ("exec-myapp", "nsenter-join")
    own = {name, run.container_id, (run.container_id or "")[:12]} - {None, ""}
    made_here = set()
    if own and not exec_run:
        made_here = {n["id"] for n in spaces if (n.get("creator") or {}).get("container") in own
                     and start <= (n.get("created") or 0) <= end}
        ids.extend(sorted(made_here))
        ids.extend(n["id"] for n in spaces if n.get("container") == name)

    def resolve(ns_type, inode):
        found = index.get((ns_type, inode)) or []
        # A neighbour's container may get the same inode moments later: ours first.
        mine = [n for n in found if n["id"] in made_here]
        live = mine or [n for n in found if during(n)] or found
        return max(live, key=lambda n: _gen(n["id"]))["id"] if live else None

        for proc in graph.get("processes", []):
            if isinstance(proc, dict) and proc.get("container") == name:
                ids.extend((proc.get("ns") or {}).values())
    observed = dict(links_in_output(run.output)) if not exec_run else {}
    observed.update(run.observed_ns)
    observed_ids = [i for i in (resolve(t, inode) for t, inode in observed.items()) if i]
    ids.extend(observed_ids)

    for join in graph.get("joins", []):
        if not isinstance(join, dict) or not (start <= (join.get("start") or 0) <= end + 5):
            continue
        targets = set((join.get("target") or {}).values())
        if (run.scenario == "exec-myapp" and name and join.get("container") == name) \
                or (exec_run and targets & set(observed_ids)):
            joins.append(join.get("id"))
            ids.extend(targets)

    for ns_id in _unique(i for i in ids if i and i not in host_ids):
        ns = by_id.get(ns_id)
        if ns is not None and not exec_run and start <= (ns.get("created") or 0) <= end:
            created.append(ns_id)
        else:
            joined.append(ns_id)
    return {"namespaces": {"created": created, "joined": joined}, "joins": _unique(joins)}


def _gen(ns_id) -> int:
    try:
        return int(str(ns_id).rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return -1


def _unique(items) -> list:
    seen, out = set(), []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out
