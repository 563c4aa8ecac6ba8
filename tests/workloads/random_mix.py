"""A seeded random mix of namespace operations while `nsgraph serve` runs, then the live graph
(its HTTP API), a fresh `nsgraph snapshot --json` and `lsns -J` compared with the system,
namespace by namespace (issue 10: the randomized end-to-end check).

    sudo .venv/bin/python tests/workloads/random_mix.py [--seed N] [--duration 45]

Operations: docker run (alone, --network none, or --network/--pid container:X of another),
docker exec (short, and -d sleepers), docker rm; unshare and nsenter sleepers; a user
namespace made by uid 65534; ip netns add/del/exec; threads that unshare on their own (the
C helper of tests/kernel/test_threads_zombies.py); podman run/rm when a podman image is given.
Bounded: at most MAX_OPS operations, a few live objects of each kind, `duration` seconds.

Ground truth, from the system only: every process's /proc/PID/ns/* and
/proc/PID/task/*/ns/* (members, threads), `docker inspect` / `podman inspect` (which
container owns a namespace: the one whose init is in it and that did not join it with
container:X), /run/netns/* (pins), /proc/PID/uid_map and the uid the mix ran unshare as
(user-namespace owners).  Only the namespaces of this mix are compared (the host is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time

TYPES = ("mnt", "uts", "ipc", "net", "pid", "user", "cgroup", "time")
NOBODY = 65534
MAX_OPS = 150
LIMITS = {"docker": 5, "podman": 2, "sleepers": 10, "netns": 4, "threads": 2}
PODMAN_RUN = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")


def run(*argv, timeout=60, check=True):
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=check).stdout


def ns_inode(pid, t, tid=None):
    path = "/proc/%d/task/%d/ns/%s" % (pid, tid, t) if tid else "/proc/%d/ns/%s" % (pid, t)
    return os.stat(path).st_ino


class Mix:
    def __init__(self, seed, image, prefix, helper=None, podman_image=None, log=print):
        self.seed, self.rng = seed, random.Random(seed)
        self.image, self.prefix, self.helper, self.podman_image = image, prefix, helper, podman_image
        self.log = log
        self.containers = {}          # name -> engine
        self.donor = {}               # name -> the container whose pid namespace it joined
        self.dead = set()             # containers that died with their donor (removed at cleanup)
        self.ever_ids = set()         # every container id the mix ran (removed ones too)
        self.sleepers = []            # Popen
        self.threads = []             # Popen of the helper
        self.netns = []
        self.host_made = set()        # (type, inode) made on the host by the mix: owned by no container
        self.user_owner = {}          # user-namespace inode -> the uid that made it
        self.count = 0
        self.ops = [(4, self.docker_run), (3, self.docker_exec), (1, self.docker_rm), (3, self.unshare),
                    (2, self.unshare_user), (2, self.nsenter), (2, self.kill_sleeper), (2, self.netns_add),
                    (1, self.netns_del), (2, self.netns_exec), (1, self.thread_helper)]
        if podman_image:
            self.ops += [(2, self.podman_run), (1, self.podman_rm)]

    # -- the loop ---------------------------------------------------------------------

    def run(self, duration):
        deadline = time.monotonic() + duration
        weights = [w for w, _ in self.ops]
        while time.monotonic() < deadline and self.count < MAX_OPS:
            op = self.rng.choices([f for _, f in self.ops], weights)[0]
            try:
                done = op()
            except (subprocess.SubprocessError, OSError) as exc:
                done = "failed: %s" % str(exc).strip()[:200]
            if done:
                self.count += 1
                self.log("[mix %3d %6.1fs] %s: %s" % (self.count, duration - (deadline - time.monotonic()),
                                                     op.__name__, done))

    def pick(self, items):
        return self.rng.choice(sorted(items)) if items else None

    def running(self, engine):
        return [n for n, e in self.containers.items() if e == engine and n not in self.dead]

    # -- operations (each returns what it did, or None when it did not apply) ------------

    def docker_run(self):
        if len(self.running("docker")) >= LIMITS["docker"]:
            return None
        name = "%s-d%d" % (self.prefix, self.count)
        args = ["docker", "run", "-d", "--name", name, "--label", "org.nsgraph.mix=%d" % self.seed]
        donor = self.pick(self.running("docker"))
        mode = self.rng.choice(("own", "none", "shared")) if donor else self.rng.choice(("own", "none"))
        if mode == "none":
            args += ["--network", "none"]
        elif mode == "shared":
            args += ["--network", "container:" + donor, "--pid", "container:" + donor]
        self.ever_ids.add(run(*args, self.image, "sleep", "600").strip())
        self.containers[name] = "docker"
        if mode == "shared":
            self.donor[name] = donor
        return " ".join(args[2:])

    def docker_exec(self):
        name = self.pick(self.running("docker"))
        if name is None:
            return None
        if self.rng.random() < 0.5:
            run("docker", "exec", name, "true")
            return "docker exec %s true" % name
        run("docker", "exec", "-d", name, "sleep", "600")
        return "docker exec -d %s sleep 600" % name

    def docker_rm(self):
        name = self.pick(self.running("docker"))
        if name is None:
            return None
        run("docker", "rm", "-f", name)
        del self.containers[name]
        # The init of a shared pid namespace took everything in it along.
        gone = {name}
        while True:
            more = {n for n, d in self.donor.items() if d in gone and n not in gone}
            if not more:
                break
            gone |= more
        self.dead |= gone - {name}
        return "docker rm -f %s%s" % (name, " (its pid namespace took %s)" % sorted(gone - {name})
                                      if len(gone) > 1 else "")

    def podman_run(self):
        if len(self.running("podman")) >= LIMITS["podman"]:
            return None
        name = "%s-p%d" % (self.prefix, self.count)
        self.ever_ids.add(run("podman", "run", "-d", *PODMAN_RUN, "--name", name, "--network", "none",
                              self.podman_image, "sleep", "600", timeout=120).strip())
        self.containers[name] = "podman"
        return "podman run --network none " + name

    def podman_rm(self):
        name = self.pick(self.running("podman"))
        if name is None:
            return None
        run("podman", "rm", "-f", "-t", "0", name, timeout=120)
        del self.containers[name]
        return "podman rm -f " + name

    def _sleeper(self, argv, made=True, uid=None):
        """Start argv (which ends by exec'ing sleep in the same pid) and record the namespaces
        it made once it runs sleep."""
        if len([p for p in self.sleepers if p.poll() is None]) >= LIMITS["sleepers"]:
            return None
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.sleepers.append(p)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and p.poll() is None:
            try:
                with open("/proc/%d/comm" % p.pid) as f:
                    if f.read().strip() == "sleep":
                        break
            except OSError:
                break
            time.sleep(0.01)
        if p.poll() is not None:
            return "exited %s: %s" % (p.returncode, p.stderr.read().decode(errors="replace").strip()[:200])
        if made:
            for t in TYPES:
                try:
                    inode = ns_inode(p.pid, t)
                except OSError:
                    continue
                if inode != ns_inode(2, t):
                    self.host_made.add((t, inode))
                    if t == "user" and uid is not None:
                        self.user_owner[inode] = uid
        return "pid %d: %s" % (p.pid, " ".join(argv))

    def unshare(self):
        flags = self.rng.sample(["--uts", "--ipc", "--net", "--mount"], self.rng.randint(1, 3))
        return self._sleeper(["unshare", *sorted(flags), "sleep", "600"])

    def unshare_user(self):
        return self._sleeper(["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups",
                              "unshare", "--user", "--map-root-user", "sleep", "600"], uid=NOBODY)

    def nsenter(self):
        targets = [p.pid for p in self.sleepers if p.poll() is None]
        targets += [self.init_pid(n) for n in self.running("docker")]
        target = self.pick([t for t in targets if t])
        if target is None:
            return None
        kinds = self.rng.sample(["-n", "-u", "-i"], self.rng.randint(1, 3))
        return self._sleeper(["nsenter", "-t", str(target), *sorted(kinds), "sleep", "600"], made=False)

    def kill_sleeper(self):
        alive = [p for p in self.sleepers if p.poll() is None]
        if not alive:
            return None
        p = self.rng.choice(alive)
        p.kill()
        p.wait()
        return "killed pid %d" % p.pid

    def netns_add(self):
        if len(self.netns) >= LIMITS["netns"]:
            return None
        name = "%s-n%d" % (self.prefix, self.count)
        run("ip", "netns", "add", name)
        self.netns.append(name)
        self.host_made.add(("net", os.stat("/run/netns/" + name).st_ino))
        return "ip netns add " + name

    def netns_del(self):
        name = self.pick(self.netns)
        if name is None:
            return None
        run("ip", "netns", "del", name)
        self.netns.remove(name)
        return "ip netns del " + name

    def netns_exec(self):
        name = self.pick(self.netns)
        if name is None:
            return None
        return self._sleeper(["ip", "netns", "exec", name, "sleep", "600"])

    def thread_helper(self):
        if not self.helper or len([p for p in self.threads if p.poll() is None]) >= LIMITS["threads"]:
            return None
        p = subprocess.Popen([self.helper], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.threads.append(p)
        pid, *tids = map(int, p.stdout.readline().split())
        for tid in tids:
            for t in ("mnt", "net", "uts"):
                inode = ns_inode(pid, t, tid)
                if inode != ns_inode(pid, t):
                    self.host_made.add((t, inode))
        return "threads pid %d tids %s" % (pid, tids)

    # -- what the engines say ------------------------------------------------------------

    def init_pid(self, name):
        engine = self.containers.get(name)
        try:
            info = json.loads(run(engine, "inspect", name, timeout=60))[0]
        except (subprocess.SubprocessError, ValueError, IndexError):
            return None
        return info["State"]["Pid"] or None

    def cleanup(self):
        for p in self.sleepers:
            if p.poll() is None:
                p.kill()
            p.wait()
        for p in self.threads:
            if p.poll() is None:
                p.stdin.close()
                p.wait(timeout=10)
        for name in list(self.netns):
            run("ip", "netns", "del", name, check=False)
        for name, engine in list(self.containers.items()):
            run(engine, "rm", "-f", name, check=False, timeout=120)
        self.containers.clear()
        self.netns.clear()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--duration", type=float, default=45.0)
    args = parser.parse_args(argv)
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:0] = [os.path.dirname(here), os.path.dirname(os.path.dirname(here))]
    from workloads.mix_check import run_checked_mix
    return 1 if run_checked_mix(args.seed, args.duration, log=print) else 0


if __name__ == "__main__":
    sys.exit(main())
