"""A busy host for the dashboard tests and screenshots: N real containers of the
local demo image, some sharing net or pid with another container
(`--network container:X`, `--pid container:X`), some in the host's namespaces
(`--pid host`, `--network host`), started in parallel, named with a unique
prefix and labelled, and removed on every path (only ours: the shared dockerd
and other people's containers are never touched).

Ground truth comes from the system: `docker inspect` (modes, init pid) and
/proc/<pid>/ns/* (inodes), never from nsgraph.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import secrets
import subprocess
import time

IMAGE = "nsgraph-demo:latest"
LABEL = "org.nsgraph.test"
NS_TYPES = ("user", "pid", "mnt", "net", "uts", "ipc", "cgroup", "time")


def plan(prefix: str, count: int) -> list:
    """(name, extra docker run arguments) in start order; dependents after what they join."""
    if count < 12:
        raise ValueError("a busy host needs at least 12 containers")
    names = ["%s-%02d" % (prefix, i) for i in range(count)]
    special = {
        count - 10: ["--pid", "host"], count - 9: ["--pid", "host"], count - 8: ["--pid", "host"],
        count - 7: ["--network", "host"], count - 6: ["--network", "host"],
        count - 5: ["--network", "container:" + names[0]], count - 4: ["--network", "container:" + names[0]],
        count - 3: ["--network", "container:" + names[1]],
        count - 2: ["--pid", "container:" + names[2]], count - 1: ["--pid", "container:" + names[2]],
    }
    return [(name, special.get(i, [])) for i, name in enumerate(names)]


class BusyHost:
    def __init__(self, count: int = 50, prefix: str | None = None, image: str = IMAGE):
        self.prefix = prefix or "nsgtest-dash-" + secrets.token_hex(3)
        self.count = count
        self.image = image
        self.names = []
        self.run_id = self.prefix

    def _run(self, name, extra):
        argv = ["docker", "run", "-d", "--name", name, "--label", "%s=%s" % (LABEL, self.run_id),
                "--memory", "32m", *extra, self.image, "sleep", "3600"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError("docker run %s failed: %s" % (name, done.stderr.strip()[-400:]))
        return name

    def start(self, workers: int = 8) -> list:
        steps = plan(self.prefix, self.count)
        self.names = [name for name, _ in steps]
        independent = [s for s in steps if not any(a.startswith("container:") for a in s[1])]
        dependent = [s for s in steps if s not in independent]
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            for batch in (independent, dependent):
                list(pool.map(lambda s: self._run(*s), batch))
        return self.names

    def stop(self) -> None:
        """Remove every container of this run (by label: also those a failed start left)."""
        ids = subprocess.run(["docker", "ps", "-aq", "--filter", "label=%s=%s" % (LABEL, self.run_id)],
                             capture_output=True, text=True, timeout=60).stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, timeout=300)

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- ground truth --

    def inspect(self) -> dict:
        """name -> docker inspect record."""
        out = subprocess.run(["docker", "inspect", *self.names], capture_output=True, text=True,
                             timeout=120, check=True).stdout
        return {c["Name"].lstrip("/"): c for c in json.loads(out)}

    def truth(self) -> dict:
        """name -> {"pid", "ns": {type: inode}, "host": {types shared with the host},
        "shared": {type: set of our other containers with that namespace}, "pid_mode", "network_mode"}."""
        info = self.inspect()
        # The host as this process sees it (pid 1 may be out of reach in a sandbox).
        host = {t: os.stat("/proc/self/ns/" + t).st_ino for t in NS_TYPES}
        out = {}
        for name, c in info.items():
            pid = c["State"]["Pid"]
            ns = {t: os.stat("/proc/%d/ns/%s" % (pid, t)).st_ino for t in NS_TYPES}
            out[name] = {"pid": pid, "ns": ns, "host": {t for t in NS_TYPES if ns[t] == host[t]},
                         "pid_mode": c["HostConfig"]["PidMode"], "network_mode": c["HostConfig"]["NetworkMode"],
                         "id": c["Id"]}
        for name, t in out.items():
            t["shared"] = {}
            for ns_type in NS_TYPES:
                if ns_type in t["host"]:
                    continue
                others = {o for o, u in out.items() if o != name and u["ns"][ns_type] == t["ns"][ns_type]}
                if others:
                    t["shared"][ns_type] = others
        return out


def wait_running(names, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", *names],
                             capture_output=True, text=True, timeout=60).stdout.split()
        if out and all(x == "true" for x in out):
            return
        time.sleep(0.2)
    raise AssertionError("containers not running after %.0f s" % timeout)
