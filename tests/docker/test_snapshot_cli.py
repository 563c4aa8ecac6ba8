"""`nsgraph snapshot` (--json, --dot, table) as a subprocess, against util-linux lsns,
/proc/<pid>/ns, `ip netns` and `docker inspect` (root, real Docker).

Processes start and exit while lsns runs (the machine is shared), so lsns is
bracketed by two `nsgraph snapshot --json` runs, as tests/kernel/test_snapshot_live.py
does for the snapshot layer: a count must lie between the members present in
both runs and those present in either (exact for a namespace nobody entered or
left).  The nsgraph processes themselves are left out of their own results:
neither exists while lsns runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid

import pytest

from tests.conftest import REPO, require, inode, wait_for

NSGRAPH = os.path.join(REPO, ".venv", "bin", "nsgraph")
PREFIX = "nsgtest-snapcli-%s" % uuid.uuid4().hex[:8]
MEMBER_TYPES = ("mnt", "pid", "net", "uts", "ipc", "user", "cgroup", "time")
REQUIRED = {"type": str, "inode": int, "pids": list, "container": (str, type(None)),
            "owner": (int, type(None)), "parent": (int, type(None)), "pinned": list}


def children_of(pid):
    with open("/proc/%d/task/%d/children" % (pid, pid)) as handle:
        return [int(x) for x in handle.read().split()]


def nsgraph(*args):
    """(pid of the nsgraph process, stdout) of `nsgraph snapshot ARGS`."""
    proc = subprocess.Popen([NSGRAPH, "snapshot", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, "nsgraph snapshot %s failed (%d): %s" % (" ".join(args), proc.returncode, err)
    return proc.pid, out


def snapshot_json():
    pid, out = nsgraph("--json")
    return pid, json.loads(out)


def lsns_rows():
    require(shutil.which("lsns") is not None, "util-linux lsns is not installed")
    out = subprocess.run(["lsns", "--json", "--output", "NS,TYPE,NPROCS,PID,PNS,ONS"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)["namespaces"]


def members(data, leave_out):
    return {(n["type"], n["inode"]): set(n["pids"]) - leave_out for n in data["namespaces"]}


def last_pid():
    with open("/proc/sys/kernel/ns_last_pid") as f:
        return int(f.read())


def allocated(first, last):
    """Pids (and thread ids) handed out between two ns_last_pid readings."""
    if last >= first:
        return last - first
    with open("/proc/sys/kernel/pid_max") as f:
        return int(f.read()) - first + last


def compare(before, rows, after, leave_out, ours, transients=0):
    """Disagreements between lsns rows and the `nsgraph snapshot --json` runs around them.

    leave_out: the nsgraph pids; ours: (type, inode) of this test's namespaces, where lsns
    counts itself; transients: how many processes can have been born after the first run
    and gone before the second (ids allocated meanwhile): lsns may count them, nsgraph cannot.
    """
    problems = []
    was, now = members(before, leave_out), members(after, leave_out)
    types = {}
    for data in (before, after):
        for n in data["namespaces"]:
            types.setdefault(n["inode"], set()).add(n["type"])
    for row in rows:
        ns_type, ns_inode, nprocs, pid = row["type"], int(row["ns"]), int(row["nprocs"]), int(row["pid"])
        ref = (ns_type, ns_inode)
        if ns_inode in types and ns_type not in types[ns_inode]:
            problems.append("%s: nsgraph calls inode %d %s" % (ref, ns_inode, sorted(types[ns_inode])))
        both = was.get(ref, set()) & now.get(ref, set())
        either = was.get(ref, set()) | now.get(ref, set())
        if not either:
            try:
                still_there = inode("/proc/%d/ns/%s" % (pid, ns_type)) == ns_inode
            except OSError:
                still_there = False
            if still_there:
                problems.append("%s (pid %d) missing from nsgraph snapshot --json" % (ref, pid))
            continue
        lsns_itself = 1 if ref in ours else 0
        if not len(both) + lsns_itself <= nprocs <= len(either) + lsns_itself + transients:
            problems.append("%s: lsns counts %d processes, nsgraph %d..%d (+%d for lsns, +%d born and gone)"
                            % (ref, nprocs, len(both), len(either), lsns_itself, transients))
        if pid not in either:
            problems.append("%s: lsns pid %d is not among nsgraph's pids (%s...)" % (ref, pid, sorted(either)[:5]))
    listed = {(row["type"], int(row["ns"])) for row in rows}
    for ref in now:
        if was.get(ref, set()) & now[ref] and ref not in listed:
            problems.append("%s has steady members in nsgraph but lsns does not list it" % (ref,))
    return problems


def own_namespaces():
    return {(t, inode("/proc/self/ns/" + t)) for t in MEMBER_TYPES if os.path.exists("/proc/self/ns/" + t)}


@pytest.fixture(scope="module")
def world(root, docker_client):
    """A container, a pinned netns and nested user+pid namespaces, all named or killed at the end."""
    from webapp.demos.image import ensure_demo_image
    require(shutil.which("ip") is not None, "iproute2 `ip` is not installed")
    image = ensure_demo_image(docker_client)
    name = PREFIX + "-c"
    netns = PREFIX + "-n"
    nested = None
    started = []             # pid-namespace inits: killing one ends everything inside
    try:
        container = docker_client.containers.run(image, ["sleep", "300"], name=name, detach=True)
        subprocess.run(["ip", "netns", "add", netns], check=True)
        # host -> pid namespace 1 (the inner unshare) -> 2 (sleep); user: host -> 1 -> 2 likewise
        nested = subprocess.Popen(["unshare", "--user", "--map-root-user", "--pid", "--fork",
                                   "unshare", "--user", "--map-root-user", "--pid", "--fork", "sleep", "300"])
        inner = wait_for(lambda: children_of(nested.pid), "outer unshare's child")[0]
        started.append(inner)
        sleeper = wait_for(lambda: children_of(inner), "inner unshare's child")[0]
        wait_for(lambda: inode("/proc/%d/ns/pid" % sleeper) != inode("/proc/%d/ns/pid" % inner), "inner --pid")
        container.reload()
        init = container.attrs["State"]["Pid"]
        yield {
            "name": name, "init": init,
            "container_ns": {t: inode("/proc/%d/ns/%s" % (init, t)) for t in ("net", "uts", "ipc", "mnt", "pid")},
            "sandbox": container.attrs["NetworkSettings"]["SandboxKey"],
            "netns": ("/run/netns/" + netns, inode("/run/netns/" + netns)),
            "pid_chain": [inode("/proc/self/ns/pid"), inode("/proc/%d/ns/pid" % inner),
                          inode("/proc/%d/ns/pid" % sleeper)],
            # unshare itself enters the user namespace it makes; only the pid one is for its children.
            "user_chain": [inode("/proc/self/ns/user"), inode("/proc/%d/ns/user" % nested.pid),
                           inode("/proc/%d/ns/user" % inner)],
        }
    finally:
        for pid in started:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        if nested is not None:
            nested.kill()
            nested.wait()
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)


def test_json_agrees_with_lsns(world):
    for _ in range(5):             # a namespace born and gone within lsns's run: try again
        pid_a, before = snapshot_json()
        first = last_pid()
        rows = lsns_rows()
        transients = max(0, allocated(first, last_pid()) - 1)      # lsns is one of them
        pid_b, after = snapshot_json()
        problems = compare(before, rows, after, {pid_a, pid_b}, own_namespaces(), transients)
        if not problems:
            break
    assert not problems, problems
    listed = {(row["type"], int(row["ns"])) for row in rows}
    for t, ino in world["container_ns"].items():
        assert (t, ino) in listed
    assert ("pid", world["pid_chain"][2]) in listed and ("user", world["user_chain"][2]) in listed


def test_lsns_comparison_catches_a_wrong_count_pid_or_type(world):
    """The comparison itself can fail: doctored nsgraph output must be caught."""
    pid_a, before = snapshot_json()
    rows = lsns_rows()
    pid_b, after = snapshot_json()
    ours = own_namespaces()
    net = world["container_ns"]["net"]

    def doctored(change):
        a, b = json.loads(json.dumps(before)), json.loads(json.dumps(after))
        for data in (a, b):
            for n in data["namespaces"]:
                if n["inode"] == net:
                    change(n)
        return compare(a, rows, b, {pid_a, pid_b}, ours)

    assert any("missing from" in p for p in doctored(lambda n: n.update(pids=[])))
    assert any("lsns counts" in p for p in doctored(lambda n: n.update(pids=n["pids"] + [999999999])))
    assert any("not among" in p for p in doctored(lambda n: n.update(pids=[p + 1 for p in n["pids"]])))
    assert any("calls inode" in p for p in doctored(lambda n: n.update(type="uts")))


def test_json_keys_and_values_per_namespace(world):
    _, before = snapshot_json()
    rows = {(r["type"], int(r["ns"])): r for r in lsns_rows()}
    _, data = snapshot_json()
    # Compared with lsns: namespaces the same in both runs around it (same kernel id,
    # owner and parent); on a busy host others come and go, and inodes are reused.
    steady = {(n["type"], n["inode"]): (n.get("ns_id"), n["owner"], n["parent"]) for n in before["namespaces"]}
    spaces = data["namespaces"]
    assert spaces, data
    for n in spaces:
        for key, kind in REQUIRED.items():
            assert key in n, "namespace %s lacks %r" % (n.get("id"), key)
            assert isinstance(n[key], kind), (key, n)
        assert n["type"] in MEMBER_TYPES and all(isinstance(p, int) for p in n["pids"])
        assert all(isinstance(p, str) for p in n["pinned"])
        row = rows.get((n["type"], n["inode"]))
        if steady.get((n["type"], n["inode"])) != (n.get("ns_id"), n["owner"], n["parent"]):
            row = None
        if row is not None:        # owner and parent as the kernel reports them to lsns (0: none)
            assert n["owner"] == (int(row["ons"]) or None), (n, row)
            if n["type"] in ("pid", "user"):
                assert n["parent"] == (int(row["pns"]) or None), (n, row)
    by_ref = {(n["type"], n["inode"]): n for n in spaces}
    # The engine's user namespace owns the container's namespaces (no userns-remap):
    # read from the container's own process, not from pytest's, which may itself run
    # in a container or in namespaces of its own.
    engine_user = inode("/proc/%d/ns/user" % world["init"])
    for t, ino in world["container_ns"].items():
        n = by_ref[(t, ino)]
        assert n["container"] == world["name"] and world["init"] in n["pids"]
        assert n["owner"] == engine_user
    path, ino = world["netns"]
    pins = by_ref[("net", ino)]["pinned"]
    # Other mount namespaces of a shared host (another tool's sandbox, a fleet agent) may
    # see the same bind mount through propagation: listed as mnt:[N]PATH, besides ours.
    assert path in pins and all(p == path or re.fullmatch(r"mnt:\[\d+\]" + re.escape(path), p)
                                for p in pins), pins
    assert by_ref[("net", ino)]["pids"] == []
    assert by_ref[("net", ino)]["container"] is None       # no process: in no container
    # Docker's sandbox pin lives in the engine's mount namespace: when pytest runs in
    # another one (CI's package audit does), it is listed as mnt:[N]PATH.
    real = os.path.realpath(world["sandbox"])
    seen = [re.sub(r"^mnt:\[\d+\]", "", p) for p in by_ref[("net", world["container_ns"]["net"])]["pinned"]]
    assert real in [os.path.realpath(p) for p in seen], seen
    for t in ("pid", "user"):
        chain = world[t + "_chain"]
        assert by_ref[(t, chain[1])]["parent"] == chain[0]
        assert by_ref[(t, chain[2])]["parent"] == chain[1]
    assert by_ref[("user", world["user_chain"][2])]["owner"] == world["user_chain"][1]


DOT_NODE = re.compile(r'^\s*"([^"]+)" \[label="((?:[^"\\]|\\.)*)"(, style="\w+")?\];$')
DOT_EDGE = re.compile(r'^\s*"([^"]+)" -> "([^"]+)" \[(?:style=dashed, )?label="(owner|parent)"\];$')


def parse_dot(text):
    """nodes {id: label}, edges [(a, b, kind)]; raises on a line that is neither."""
    assert text.count("{") == text.count("}") == 1, "unbalanced braces"
    lines = text.strip().splitlines()
    assert re.match(r"^digraph \w+ \{$", lines[0]) and lines[-1] == "}", (lines[0], lines[-1])
    nodes, edges = {}, []
    for line in lines[1:-1]:
        node, edge = DOT_NODE.match(line), DOT_EDGE.match(line)
        if node:
            assert node.group(1) not in nodes, "node declared twice: " + line
            nodes[node.group(1)] = node.group(2)
        elif edge:
            edges.append(edge.groups())
        else:
            assert re.match(r"^\s*rankdir=\w+; node \[[^\]]*\];$", line), "not DOT: %r" % line
    return nodes, edges


def test_dot_parses_and_has_the_hierarchy(world):
    _, text = nsgraph("--dot")
    nodes, edges = parse_dot(text)
    assert len(nodes) > 8 and edges
    declared = set(nodes)
    for a, b, _kind in edges:
        assert a in declared and b in declared, (a, b)

    def node(t, ino):
        found = [i for i, label in nodes.items() if label.startswith("%s %d\\n" % (t, ino))]
        assert len(found) == 1, (t, ino, found)
        return found[0]
    for t in ("pid", "user"):
        chain = [node(t, ino) for ino in world[t + "_chain"]]
        kind = "parent" if t == "pid" else "owner"       # a user namespace's parent is its owner
        assert (chain[1], chain[0], kind) in edges and (chain[2], chain[1], kind) in edges
    net = node("net", world["container_ns"]["net"])
    assert "container %s" % world["name"] in nodes[net]
    assert "pinned %s" % world["netns"][0] in nodes[node("net", world["netns"][1])]


def table_rows(text):
    """(depth, inode, type, container, pid) per row of the table."""
    lines = text.rstrip("\n").splitlines()
    assert lines[0].split() == ["NS", "TYPE", "NPROCS", "PID", "USER", "CONTAINER", "COMMAND"]
    out = []
    for line in lines[1:]:
        m = re.match(r"^( *)(└─)?(\d+) +(\w+) +(\d+) +(\S+) +(\S+) +(\S+)", line)
        assert m, "not a table row: %r" % line
        indent, branch, ino, t, _n, pid, _uid, container = m.groups()
        depth = len(indent) // 2
        assert (depth > 0) == bool(branch), line
        out.append((depth, int(ino), t, container, pid))
    return out


def test_table_lists_containers_and_indents_child_namespaces(world):
    _, text = nsgraph()
    rows = table_rows(text)
    index = {(t, ino): i for i, (_d, ino, t, _c, _p) in enumerate(rows)}
    for t, ino in world["container_ns"].items():
        assert rows[index[(t, ino)]][3] == world["name"], rows[index[(t, ino)]]
    assert rows[index[("net", world["netns"][1])]][3] == "-"
    for t in ("pid", "user"):
        at = [index[(t, ino)] for ino in world[t + "_chain"]]
        depths = [rows[i][0] for i in at]
        assert at[0] < at[1] < at[2], (t, at)
        assert depths[1] == depths[0] + 1 and depths[2] == depths[1] + 1, (t, depths)
        # Each child sits inside its parent's subtree: nothing shallower in between.
        for lo, hi in ((at[0], at[1]), (at[1], at[2])):
            assert all(rows[i][0] > rows[lo][0] for i in range(lo + 1, hi)), (t, rows[lo:hi + 1])
