"""The randomized end-to-end check's comparison (tests/workloads/random_mix.py runs the mix):
ground truth from the system, then the live graph (HTTP API of a real `nsgraph serve`),
a fresh `nsgraph snapshot --json` and `lsns -J`, namespace by namespace.

The host is busy and the mix's processes may still be settling, so each round reads the
system (a), the three views, the system again (b), and judges only namespaces whose
truth was the same at a and b; a difference counts when every round shows it."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

from workloads.random_mix import TYPES, Mix, ns_inode, run

UNKNOWN = "?"          # an owner the system cannot tell (the container was removed)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def read_proc():
    """pid -> (ppid, {type: inode}, {tid: {type: inode} where the thread differs}) for every process."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            with open("/proc/%d/stat" % pid) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            ns = {}
            for t in TYPES:
                try:
                    ns[t] = ns_inode(pid, t)
                except FileNotFoundError:
                    continue        # a type this kernel lacks
            threads = {}
            for tid in map(int, os.listdir("/proc/%d/task" % pid)):
                if tid == pid:
                    continue
                differs = {}
                for t in ("mnt", "net", "uts", "ipc", "cgroup", "time"):
                    try:
                        inode = ns_inode(pid, t, tid)
                    except OSError:
                        continue
                    if inode != ns.get(t):
                        differs[t] = inode
                if differs:
                    threads[tid] = differs
        except (OSError, ValueError, IndexError):
            continue                # gone while read
        out[pid] = (ppid, ns, threads)
    return out


def nsfs_mounts(procs):
    """(type, inode) of every namespace bind-mounted in any mount namespace: alive without
    a process (Docker's /run/docker/netns pins copied into other mount namespaces too)."""
    one_pid = {}
    for pid, (_ppid, ns, _threads) in procs.items():
        if "mnt" in ns:
            one_pid.setdefault(ns["mnt"], pid)
    found = set()
    for pid in one_pid.values():
        try:
            with open("/proc/%d/mountinfo" % pid) as f:
                for line in f:
                    fields = line.split()
                    if " - nsfs " in line and len(fields) > 3 and fields[3].endswith("]") and ":[" in fields[3]:
                        t, _, rest = fields[3].partition(":[")
                        found.add((t, int(rest[:-1])))
        except (OSError, ValueError):
            continue
    return found


def inspect_all(mix):
    """name -> inspect record of the mix's containers, from their engines."""
    found = {}
    for engine in ("docker", "podman"):
        names = [n for n, e in mix.containers.items() if e == engine]
        if names:
            text = run(engine, "inspect", *names, timeout=120, check=False)
            for info in json.loads(text or "[]"):
                found[info["Name"].lstrip("/")] = info
    return found


def truth(mix):
    """(type, inode) -> what the system says of each namespace of the mix."""
    procs = read_proc()
    host = {t: ns_inode(2, t) for t in TYPES}
    # The checker's own namespaces are the host's as far as the mix goes: in CI the whole
    # suite runs in a mount namespace of its own (.ci/package_audit.py) whose members come
    # and go with every test, so membership read at different moments never agrees there.
    runner = {t: ns_inode(os.getpid(), t) for t in TYPES}
    containers = inspect_all(mix)
    roots = {p.pid for p in mix.sleepers + mix.threads if p.poll() is None}
    by_id = {info["Id"]: info for info in containers.values()}

    def joined(info, t):
        key = {"net": "NetworkMode", "pid": "PidMode", "ipc": "IpcMode"}.get(t)
        mode = (info.get("HostConfig") or {}).get(key, "") if key else ""
        return mode[len("container:"):] if mode.startswith("container:") else None
    owner = {}
    for name, info in containers.items():
        init = info["State"]["Pid"]
        if not init or init not in procs:
            continue
        roots.add(init)
        for t, inode in procs[init][1].items():
            if inode == host.get(t):
                continue
            # The container that made it: follow container:X modes to one that joined none
            # (X may be gone: then X it is).
            maker, seen = info["Id"], set()
            while maker in by_id and joined(by_id[maker], t) and maker not in seen:
                seen.add(maker)
                maker = joined(by_id[maker], t)
            owner[(t, inode)] = maker
    for key in mix.host_made:
        owner.setdefault(key, None)
    children = {}
    for pid, (ppid, _ns, _threads) in procs.items():
        children.setdefault(ppid, []).append(pid)
    ours, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid in procs and pid not in ours:
            ours.add(pid)
            todo.extend(children.get(pid, ()))
    keys = set()
    for pid in ours:
        keys.update((t, i) for t, i in procs[pid][1].items() if i != host.get(t) and i != runner.get(t))
        keys.update((t, i) for diff in procs[pid][2].values() for t, i in diff.items())
    pins = {}
    for name in mix.netns:
        try:
            pins.setdefault(("net", os.stat("/run/netns/" + name).st_ino), []).append("/run/netns/" + name)
        except OSError:
            continue
    keys.update(pins)
    members, tids = {}, {}
    for pid, (_ppid, ns, threads) in procs.items():
        for t, inode in ns.items():
            if (t, inode) in keys:
                members.setdefault((t, inode), set()).add(pid)
        for tid, diff in threads.items():
            for t, inode in diff.items():
                if (t, inode) in keys:
                    tids.setdefault((t, inode), set()).add(tid)
    out = {}
    for key in keys:
        want = {"pids": sorted(members.get(key, ())), "tids": sorted(tids.get(key, ())),
                "owner": owner.get(key, UNKNOWN), "pinned": sorted(pins.get(key, ()))}
        if key[0] == "user" and key[1] in mix.user_owner and want["pids"]:
            want["owner_uid"] = mix.user_owner[key[1]]
            try:
                with open("/proc/%d/uid_map" % want["pids"][0]) as f:
                    want["uid_map"] = f.read()
            except OSError:
                continue
        out[key] = want
    all_alive = {(t, i) for _ppid, ns, threads in procs.values() for t, i in ns.items()} | nsfs_mounts(procs)
    all_alive |= {(t, i) for _ppid, _ns, threads in procs.values() for d in threads.values() for t, i in d.items()}
    return out, all_alive | set(pins), containers


def compare(want, graph, alive, mix_ids, prefix, running_names=None, existing=()):
    """Problems of one view: {(type, inode) or "containers": text}."""
    spaces = {(n["type"], n["inode"]): n for n in graph["namespaces"] if n.get("alive", True)}
    problems = {}
    for key, w in want.items():
        n = spaces.get(key)
        if n is None:
            problems[key] = "missing (truth %s)" % w
            continue
        got = {"pids": sorted(n["pids"]), "tids": sorted(n.get("tids") or ()), "owner": n.get("container_id"),
               # Pins as this mount namespace shows them (copies seen in others are "mnt:[N]/...").
               "pinned": sorted(p for p in n.get("pinned") or () if not p.startswith("mnt:[") and
                                (p in w["pinned"] or "/netns/" + prefix in p))}
        for field in ("owner_uid", "uid_map"):
            if field in w:
                got[field] = n.get(field)
        if w["owner"] == UNKNOWN:
            got["owner"] = UNKNOWN
        if got != w:
            problems[key] = "shows %s, truth %s" % (
                {k: v for k, v in got.items() if v != w.get(k)}, {k: v for k, v in w.items() if v != got.get(k)})
    for key, n in spaces.items():
        stale = (n.get("container_id") in mix_ids and key not in alive) or \
            (any(p.startswith("/run/netns/" + prefix) for p in n.get("pinned") or ()) and key not in alive)
        if stale:
            problems[key] = "stale: alive in the view, gone from the system (%s, pinned %s)" % (
                n.get("container"), n.get("pinned"))
    if running_names is not None:
        listed = {c["name"]: c for c in graph.get("containers", ())}
        wrong = [name for name in running_names if (listed.get(name) or {}).get("state") != "running"]
        pruned = [c["name"] for c in listed.values() if c["id"] in mix_ids and c["id"] not in existing]
        if wrong or pruned:
            problems["containers"] = "not shown running: %s; not pruned: %s" % (wrong, pruned)
    return problems


def lsns_view(want):
    """lsns -J as a view with process counts: (type, inode) -> nprocs."""
    data = json.loads(run("lsns", "-J", "-o", "NS,TYPE,NPROCS", timeout=60))
    rows = data.get("namespaces", [])
    return {(r["type"], int(r["ns"])): int(r["nprocs"]) for r in rows if (r["type"], int(r["ns"])) in want}


def fetch_graph(server, timeout=180):
    """GET /api/graph of the real server (Bearer token).  The timeout is long: on a host
    where others run process storms, serve has once taken 51 s to answer (noted in the
    issue's closing note), and a slow answer is not what this check judges."""
    import urllib.request
    req = urllib.request.Request(server.base + "/api/graph", headers={"Authorization": "Bearer " + server.token})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def check_round(mix, server, snapshot_env):
    a, _alive_a, _ids = truth(mix)
    live = fetch_graph(server)
    out = subprocess.run([sys.executable, "-m", "tracer.cli", "snapshot", "--json"], cwd=REPO, env=snapshot_env,
                         capture_output=True, text=True, timeout=180)
    snap = json.loads(out.stdout) if out.returncode == 0 else {"namespaces": []}
    counts = lsns_view(a)
    b, alive, inspected = truth(mix)
    stable = {k: v for k, v in b.items() if a.get(k) == v}
    mix_ids = set(mix.ever_ids) | {info["Id"] for info in inspected.values()}
    problems = {}
    # Not every container the mix ran is still running: `--pid container:X` ones die with X.
    running = [n for n, info in inspected.items() if info["State"].get("Running")]
    for view, graph, names in (("live", live, running), ("snapshot", snap, None)):
        existing = {info["Id"] for info in inspected.values()}
        for key, text in compare(stable, graph, alive, mix_ids, mix.prefix, names, existing).items():
            problems[(view, key)] = text
    live_spaces = {(n["type"], n["inode"]): n for n in live["namespaces"] if n.get("alive", True)}
    for key, w in stable.items():
        if w["pids"] and counts.get(key) != len(w["pids"]):
            problems[("lsns", key)] = "lsns nprocs %s, /proc %d" % (counts.get(key), len(w["pids"]))
        elif key in counts and key in live_spaces and counts[key] != len(live_spaces[key]["pids"]):
            problems[("lsns-vs-live", key)] = "lsns nprocs %d, live graph %d pids" % (
                counts[key], len(live_spaces[key]["pids"]))
    if out.returncode != 0:
        problems[("snapshot", "exit")] = "nsgraph snapshot --json exited %d: %s" % (out.returncode, out.stderr[-500:])
    return problems, len(stable)


def threads_helper(workdir):
    """The thread helper of tests/kernel/test_threads_zombies.py, compiled (None without a compiler)."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        return None
    path = os.path.join(REPO, "tests", "kernel", "test_threads_zombies.py")
    spec = importlib.util.spec_from_file_location("nsgraph_threads_source", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    src, exe = os.path.join(workdir, "threads.c"), os.path.join(workdir, "threads")
    with open(src, "w") as f:
        f.write(module.THREADS_C)
    subprocess.run([cc, "-O1", "-pthread", "-o", exe, src], check=True)
    return exe


def run_checked_mix(seed=None, duration=45.0, log=print, rounds=3, use_podman=None, workdir=None):
    """Run the mix under a real `nsgraph serve` and compare; the persistent problems ({} when none)."""
    from tracer.containers.docker_client import WORK_TIMEOUT, docker_client
    from webapp.demos.image import ensure_demo_image
    from workloads.podman_env import PodmanService, load_image, podman_available
    from workloads.serve_process import Server
    seed = random.randrange(2 ** 31) if seed is None else seed
    log("random mix: seed %d (again: sudo .venv/bin/python tests/workloads/random_mix.py --seed %d)" % (seed, seed))
    workdir = workdir or tempfile.mkdtemp(prefix="nsgraph-mix-")
    image = ensure_demo_image(docker_client(WORK_TIMEOUT))
    helper = threads_helper(workdir)
    podman_service, podman_image = None, None
    env = dict(os.environ)
    if use_podman or (use_podman is None and podman_available()):
        podman_image = load_image(image)
        podman_service = PodmanService(workdir)
        env["NSGRAPH_PODMAN_SOCKET"] = podman_service.socket
    old_env = dict(os.environ)
    os.environ.update(env)         # serve (a child) and snapshot read the socket from it
    server = Server(workdir)
    mix = Mix(seed, image, "nsgtest-mix-%d" % seed, helper=helper, podman_image=podman_image, log=log)
    try:
        server.wait_url(timeout=180)
        deadline = time.monotonic() + 180
        while server.api("/api/status")[1].get("state") != "running":
            assert time.monotonic() < deadline, "serve did not start: %s" % server.log_tail()
            time.sleep(0.5)
        mix.run(duration)
        time.sleep(1.5)             # the promise is "current within a second"
        seen = None
        for attempt in range(rounds):
            problems, judged = check_round(mix, server, env)
            log("round %d: %d namespaces judged, %d differences%s" % (
                attempt + 1, judged, len(problems), "".join("\n    %s %s: %s" % (v, k, t[:160]) for (v, k), t in
                                                           sorted(problems.items(), key=str)[:4])))
            seen = problems if seen is None else {k: v for k, v in problems.items() if k in seen}
            if not seen:
                break
            time.sleep(1.0)
        for (view, key), text in sorted((seen or {}).items(), key=str):
            log("  seed %d %s %s: %s" % (seed, view, key, text))
        if seen:
            for name, info in sorted(inspect_all(mix).items()):
                hc = info.get("HostConfig") or {}
                log("  container %s %s running=%s init=%s net=%s pid=%s" % (
                    name, info["Id"][:12], info["State"].get("Running"), info["State"].get("Pid"),
                    hc.get("NetworkMode"), hc.get("PidMode")))
        return seen or {}
    finally:
        mix.cleanup()
        server.stop()
        os.environ.clear()
        os.environ.update(old_env)
        if podman_service is not None:
            podman_service.close()
