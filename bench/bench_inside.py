#!/usr/bin/env python3
"""Inside-view speed and idle cost, each next to a floor measured in the same run.

Issue 16 asks for: the inside view of a pid namespace with 1 000 processes in
<= 200 ms, of a net namespace with 100 interfaces in <= 100 ms, and serve's
idle CPU unchanged (nothing computed while nobody asks).

  pid   a new pid namespace (unshare --pid --fork --mount-proc) with N sleeping
        processes; nsgraph's view against the floor `nsenter -t P -p -m ps -e`
        (procps reading the same /proc entries), alternating, R rounds each.
  net   a network namespace made with `ip netns add` holding 100 interfaces
        (dummy where the kernel has it, else veth pairs with both ends inside),
        each with an IPv4 address; read through its bind mount (no member
        process: the helper joins it) against `ip -n NAME -j addr`, alternating.
  idle  `nsgraph serve` started K times; per start an idle window before
        anyone asked and an idle window after a burst of inside-view requests:
        serve's own CPU (utime+stime) and its children's, helper starts and
        thread count per window.  Equal medians = nothing left running.

Wall times on a shared machine wait for the CPU; the CPU time each read used
(this process, or the helper child's) is printed too, with the load average.

    sudo .venv/bin/python bench/bench_inside.py                 # all three
    sudo .venv/bin/python bench/bench_inside.py --only pid,net --rounds 21

Everything it creates is removed at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tracer.exitcodes import EXIT_NO_PRIVILEGES, EXIT_OK  # noqa: E402
from tracer.host.inside.target import NsTarget  # noqa: E402
from tracer.host.inside.view import inspect  # noqa: E402
from tracer.host.procfs import nsfs_device  # noqa: E402

TAG = "nsgbench-" + uuid.uuid4().hex[:6]


def cpu_ms(who) -> float:
    r = resource.getrusage(who)
    return (r.ru_utime + r.ru_stime) * 1000


def timed(fn) -> tuple:
    """(wall ms, CPU ms of this process and its reaped children) of fn()."""
    c0 = cpu_ms(resource.RUSAGE_SELF) + cpu_ms(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    fn()
    wall = (time.perf_counter() - t0) * 1000
    return wall, cpu_ms(resource.RUSAGE_SELF) + cpu_ms(resource.RUSAGE_CHILDREN) - c0


def summary(name: str, samples: list) -> dict:
    walls = sorted(s[0] for s in samples)
    cpus = sorted(s[1] for s in samples)
    out = {"name": name, "n": len(samples), "wall_median_ms": round(statistics.median(walls), 1),
           "wall_min_ms": round(walls[0], 1), "wall_max_ms": round(walls[-1], 1),
           "cpu_median_ms": round(statistics.median(cpus), 1)}
    print("  %-34s wall median %7.1f ms (min %6.1f, max %7.1f)   cpu median %6.1f ms" % (
        name, out["wall_median_ms"], out["wall_min_ms"], out["wall_max_ms"], out["cpu_median_ms"]))
    return out


def alternate(rounds: int, pairs: list) -> list:
    """Run each (name, fn) once per round, alternating; [(name, samples)]."""
    samples = {name: [] for name, _ in pairs}
    for _ in range(rounds):
        for name, fn in pairs:
            samples[name].append(timed(fn))
    return [summary(name, samples[name]) for name, _ in pairs]


def check_ok(views: list) -> None:
    for v in views:
        if v["state"] != "ok":
            raise SystemExit("inside view failed: %s" % v)


# -- pid --------------------------------------------------------------------------------

def bench_pid(n: int, rounds: int) -> dict:
    script = "i=0; while [ $i -lt %d ]; do sleep 3600 & i=$((i+1)); done; echo ready; wait" % (n - 1)
    leader = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c", script],
                              start_new_session=True, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        if leader.stdout.readline().strip() != b"ready":
            raise SystemExit("the pid namespace's sleepers did not start")
        with open("/proc/%d/task/%d/children" % (leader.pid, leader.pid)) as f:
            init = int(f.read().split()[0])
        target = NsTarget("pid", os.stat("/proc/%d/ns/pid" % init).st_ino, nsfs_device(), pids=[init])
        views = inspect([target])
        check_ok(views)
        count = views[0]["view"]["count"]
        print("pid namespace with %d processes (as listed inside), host has %d in /proc" % (
            count, sum(1 for d in os.listdir("/proc") if d.isdigit())))
        floor = ["nsenter", "-t", str(init), "-p", "-m", "ps", "-e", "-o", "pid=,ppid=,comm="]
        results = alternate(rounds, [
            ("nsgraph inside view (pid)", lambda: check_ok(inspect([target]))),
            ("floor: nsenter ... ps -e", lambda: subprocess.run(floor, stdout=subprocess.DEVNULL, check=True)),
        ])
        return {"processes": count, "results": results,
                "ratio_wall": round(results[0]["wall_median_ms"] / results[1]["wall_median_ms"], 2),
                "target_ms": 200}
    finally:
        os.killpg(leader.pid, signal.SIGKILL)
        leader.wait()


# -- net --------------------------------------------------------------------------------

def _make_interfaces(name: str, n: int) -> str:
    probe = subprocess.run(["ip", "-n", name, "link", "add", "nsgprobe0", "type", "dummy"],
                           stderr=subprocess.DEVNULL)
    lines = []
    if probe.returncode == 0:
        kind = "dummy"
        subprocess.run(["ip", "-n", name, "link", "del", "nsgprobe0"], check=True)
        for i in range(n - 1):          # lo is the n-th
            lines += ["link add d%d type dummy" % i, "addr add 10.%d.%d.1/24 dev d%d" % (i // 250, i % 250, i),
                      "link set d%d up" % i]
    else:
        kind = "veth pairs (this kernel has no dummy driver)"
        for i in range((n - 1) // 2):
            lines += ["link add va%d type veth peer name vb%d" % (i, i),
                      "addr add 10.%d.%d.1/24 dev va%d" % (i // 250, i % 250, i),
                      "link set vb%d up" % i, "link set va%d up" % i]
        if (n - 1) % 2:
            kind += " and a bridge"
            lines += ["link add br0 type bridge", "addr add 10.255.0.1/24 dev br0", "link set br0 up"]
    with tempfile.NamedTemporaryFile("w", suffix=".ip", delete=False) as f:
        f.write("\n".join(lines) + "\n")
    try:
        subprocess.run(["ip", "-n", name, "-batch", f.name], check=True)
    finally:
        os.unlink(f.name)
    return kind


def bench_net(n: int, rounds: int) -> dict:
    name = TAG
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        kind = _make_interfaces(name, n)
        path = "/run/netns/" + name
        target = NsTarget("net", os.stat(path).st_ino, nsfs_device(), pinned=[path])
        views = inspect([target])
        check_ok(views)
        count = len(views[0]["view"]["interfaces"])
        print("net namespace with %d interfaces (%s), read through its bind mount %s" % (count, kind, path))
        floor = ["ip", "-n", name, "-j", "addr"]
        results = alternate(rounds, [
            ("nsgraph inside view (net)", lambda: check_ok(inspect([target]))),
            ("floor: ip -n NAME -j addr", lambda: subprocess.run(floor, stdout=subprocess.DEVNULL, check=True)),
            ("floor: python -E -S -c pass", lambda: subprocess.run([sys.executable, "-E", "-S", "-c", "pass"],
                                                                    check=True)),
        ])
        return {"interfaces": count, "kind": kind, "results": results,
                "ratio_wall": round(results[0]["wall_median_ms"] / results[1]["wall_median_ms"], 2),
                "target_ms": 100}
    finally:
        subprocess.run(["ip", "netns", "del", name])


# -- idle -------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stat(pid: int) -> dict:
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    with open("/proc/%d/status" % pid) as f:
        threads = next(int(line.split()[1]) for line in f if line.startswith("Threads:"))
    return {"self_ms": (int(fields[11]) + int(fields[12])) * 1000 / tick,
            "children_ms": (int(fields[13]) + int(fields[14])) * 1000 / tick, "threads": threads}


class Serve:
    def __init__(self, tmp: str):
        self.port = _free_port()
        token_file = os.path.join(tmp, "token-%d" % self.port)
        self.proc = subprocess.Popen([sys.executable, "-m", "tracer.cli", "serve", "--port", str(self.port),
                                      "--token-file", token_file, "--db", os.path.join(tmp, "h-%d.db" % self.port)],
                                     cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.time() + 60
        while not os.path.exists(token_file) and time.time() < deadline:
            time.sleep(0.1)
        with open(token_file) as f:
            self.token = f.read().strip()
        while self.get("/api/status").get("state") != "running":
            if time.time() > deadline:
                raise SystemExit("nsgraph serve did not start")
            time.sleep(0.2)

    def get(self, path: str) -> dict:
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.port, path),
                                     headers={"Authorization": "Bearer " + self.token})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return json.loads(exc.read() or b"{}")
        except OSError:
            return {}

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _window(serve: Serve, seconds: float) -> dict:
    helpers0 = serve.get("/api/inside/stats")["helpers"]["started"]
    before = _stat(serve.proc.pid)
    time.sleep(seconds)
    after = _stat(serve.proc.pid)
    helpers1 = serve.get("/api/inside/stats")["helpers"]["started"]
    return {"cpu_ms_per_s": round((after["self_ms"] - before["self_ms"]) / seconds, 2),
            "children_ms": round(after["children_ms"] - before["children_ms"], 1),
            "helpers_started": helpers1 - helpers0, "threads": after["threads"]}


def bench_idle(starts: int, seconds: float) -> dict:
    never, after = [], []
    with tempfile.TemporaryDirectory(prefix=TAG) as tmp:
        for i in range(starts):
            serve = Serve(tmp)
            try:
                time.sleep(3)                           # start-up settles (first reconcile)
                never.append(_window(serve, seconds))
                host = serve.get("/api/process/2")["process"]["ns"]
                for t in ("uts", "net", "pid", "mnt", "ipc", "user", "cgroup", "time"):
                    view = serve.get("/api/namespace/%s/inside" % host[t])
                    if view.get("state") != "ok":
                        raise SystemExit("inside view of the host's %s failed: %s" % (t, view))
                serve.get("/api/inside/compare?ns=%s&ns=%s" % (host["uts"], host["uts"]))
                time.sleep(1)
                after.append(_window(serve, seconds))
                print("  start %d: idle before anyone asked %s | idle after 9 inside requests %s" % (
                    i + 1, never[-1], after[-1]))
            finally:
                serve.stop()
    med = lambda rows, k: round(statistics.median(r[k] for r in rows), 2)  # noqa: E731
    out = {"seconds_per_window": seconds, "starts": starts,
           "never_asked_cpu_ms_per_s": med(never, "cpu_ms_per_s"),
           "after_asking_cpu_ms_per_s": med(after, "cpu_ms_per_s"),
           "spread_never": [r["cpu_ms_per_s"] for r in never], "spread_after": [r["cpu_ms_per_s"] for r in after],
           "helpers_started_while_idle": sum(r["helpers_started"] for r in never + after),
           "threads_never_vs_after": [(a["threads"], b["threads"]) for a, b in zip(never, after)]}
    print("  serve idle CPU: %.2f ms/s before anyone asked, %.2f ms/s after (medians of %d); "
          "helpers started while idle: %d" % (out["never_asked_cpu_ms_per_s"], out["after_asking_cpu_ms_per_s"],
                                               starts, out["helpers_started_while_idle"]))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="pid,net,idle", help="comma-separated: pid, net, idle")
    parser.add_argument("--processes", type=int, default=1000)
    parser.add_argument("--interfaces", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--starts", type=int, default=3, help="serve starts for the idle measurement")
    parser.add_argument("--window", type=float, default=10.0, help="seconds per idle window")
    parser.add_argument("--json", metavar="PATH", help="also write the results here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_inside needs root (unshare, ip netns, nsenter, nsgraph serve)", file=sys.stderr)
        return EXIT_NO_PRIVILEGES
    only = set(args.only.split(","))
    results = {"loadavg_start": open("/proc/loadavg").read().split()[:3], "cpus": os.cpu_count()}
    print("load average %s on %d CPUs (a shared machine: wall times include waiting for a CPU)"
          % (" ".join(results["loadavg_start"]), results["cpus"]))
    if "pid" in only:
        results["pid"] = bench_pid(args.processes, args.rounds)
    if "net" in only:
        results["net"] = bench_net(args.interfaces, args.rounds)
    if "idle" in only:
        results["idle"] = bench_idle(args.starts, args.window)
    results["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    print("load average at the end: %s" % " ".join(results["loadavg_end"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
