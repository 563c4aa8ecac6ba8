"""Start `nsgraph serve` for a benchmark and read its CPU time and memory (bench_serve, soak_serve)."""

from __future__ import annotations

import ctypes
import http.client
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time

URL_LINE = re.compile(r"^http://[^\s/]+:(\d+)/\?token=(\S+)\s*$")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]



PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a child before exec: SIGTERM when the parent ends (prctl PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

class Serve:
    """`nsgraph serve` from the checkout `repo` (its code on PYTHONPATH, this interpreter)."""

    def __init__(self, repo: str, tmp: str, extra=(), fd_limit: int = 1024, label: str = "serve",
                 cpus=None, env=None):
        self.repo = repo
        self.tmp = tmp
        os.makedirs(tmp, exist_ok=True)
        self.log_path = os.path.join(tmp, "%s.log" % label)
        self.port = free_port()
        self.token = None
        log = open(self.log_path, "w")
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]

        def limit_fds():
            # Serve runs in its own session (so signals to the bench do not reach it first):
            # have the kernel stop it if the bench dies without its `finally` (SIGKILL), or a
            # traced, probe-attached serve outlives the run and skews every later measurement.
            die_with_parent()
            # What a systemd unit without LimitNOFILE= gives: soft 1 024 (the hard stays).
            resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, hard))
            if cpus:        # before exec: every thread serve starts inherits it
                os.sched_setaffinity(0, cpus)

        # As the systemd unit (scripts/nsgraph.service) runs it.
        env = dict(os.environ, PYTHONPATH=repo, MALLOC_ARENA_MAX="2", **(env or {}))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tracer.cli", "serve", "--port", str(self.port),
             "--db", os.path.join(tmp, "%s.db" % label)] + list(extra),
            cwd=repo, env=env, stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True,
            preexec_fn=limit_fds)
        found = threading.Event()

        def read():
            for line in self.proc.stdout:
                m = URL_LINE.match(line.strip())
                if m and not found.is_set():
                    self.token = m.group(2)
                    found.set()
        threading.Thread(target=read, daemon=True).start()
        if not found.wait(90):
            self.stop()
            raise SystemExit("nsgraph serve did not print its URL; see %s" % self.log_path)

    def status(self, timeout=5.0):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        conn.request("GET", "/api/status", headers={"Authorization": "Bearer " + self.token})
        body = json.loads(conn.getresponse().read())
        conn.close()
        return body

    def wait_running(self, timeout=180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.status()["state"] == "running":
                    return
            except (OSError, ValueError, http.client.HTTPException):
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.5)
        raise SystemExit("nsgraph serve did not reach 'running'; see %s" % self.log_path)

    def cpu_seconds(self) -> float:
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_mb(self) -> float:
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
        return 0.0

    def anon_mb(self) -> float:
        """Anonymous memory (the heap, Python's arenas; not the mapped files) from smaps_rollup."""
        try:
            with open("/proc/%d/smaps_rollup" % self.proc.pid) as f:
                for line in f:
                    if line.startswith("Anonymous:"):
                        return int(line.split()[1]) / 1024.0
        except OSError:
            pass
        return 0.0

    def metrics(self, timeout=10.0) -> dict:
        """/metrics as {name{labels}: value} (unlabelled names are plain keys)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        conn.request("GET", "/metrics", headers={"Authorization": "Bearer " + self.token})
        text = conn.getresponse().read().decode()
        conn.close()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _sep, value = line.rpartition(" ")
                try:
                    out[name] = float(value)
                except ValueError:
                    pass
        return out

    def fds(self) -> int:
        try:
            return len(os.listdir("/proc/%d/fd" % self.proc.pid))
        except OSError:
            return -1

    def threads(self) -> int:
        try:
            return len(os.listdir("/proc/%d/task" % self.proc.pid))
        except OSError:
            return -1

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def build_workload(tmp: str) -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    binary = os.path.join(tmp, "workload")
    subprocess.run(["gcc", "-O2", "-o", binary, os.path.join(here, "workload.c")], check=True)
    return binary


def load_text() -> str:
    one, five, _ = os.getloadavg()
    return "load %.1f/%.1f" % (one, five)
