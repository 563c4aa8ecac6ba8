"""Which namespaces and join sessions a demo run created or joined, from synthetic Graph JSON.

webapp/demos/outcome.py is pure: a Run and the Graph JSON in, ids out.  The
graphs here are written by hand (and checked against the GraphJSON TypedDict,
so they are shaped like the real thing); the cases are the ones the dashboard
meets: `docker run --rm` containers the catalog named or not, inodes printed
by the demo itself, recycled inodes, `docker exec` and nsenter join sessions,
and above all two demos running at the same time, which must never get each
other's namespaces.
"""

from __future__ import annotations

import pytest

from tracer.graph.schema import GraphJSON, check_shape, namespace_id
from webapp.demos.outcome import links_in_output, namespaces_for_run
from webapp.demos.run import Run

DEV = 4
T0 = 1_800_000_000.0
HOST = {"user": 4026531837, "pid": 4026531836, "mnt": 4026531841, "net": 4026531840,
        "uts": 4026531838, "ipc": 4026531839, "cgroup": 4026531835}
HOST_IDS = {t: namespace_id(t, DEV, i, 0) for t, i in HOST.items()}
OWN_TYPES = ("mnt", "uts", "ipc", "pid", "net", "cgroup")     # what a docker run container gets


def ns(ns_type, inode, gen=0, created=None, ended=None, container=None, creator=None, pids=()):
    return {"id": namespace_id(ns_type, DEV, inode, gen), "type": ns_type, "inode": inode, "dev": DEV,
            "generation": gen, "ns_id": None, "alive": ended is None, "created": created, "ended": ended,
            "creator": creator, "pids": list(pids), "tids": [], "container": container, "sharers": [], "sharer_ids": [],
            "container_id": ("c0ffee" * 10 + container[:4].ljust(4, "0")) if container else None,
            "owner": HOST["user"], "owner_id": HOST_IDS["user"], "parent": None, "parent_id": None,
            "owner_uid": None, "uid_map": None, "gid_map": None, "pinned": [], "holders": [],
            "pending_end": False, "repaired": False}


def runc(pid, ts, container=None):
    creator = {"pid": pid, "tid": pid, "comm": "runc:[1:CHILD]", "syscall": "clone3",
               "flags": ["CLONE_NEWNS", "CLONE_NEWUTS"], "ts": ts}
    if container:
        creator["container"] = container        # the cgroup the kernel saw names it
    return creator


def proc(pid, ns_ids, container=None):
    return {"pid": pid, "ppid": 1, "comm": "sh", "cmdline": "sh", "uid": 0, "ns": dict(ns_ids),
            "container": container, "container_id": None, "repaired": False}


def join(ident, pid, exec_pid, start, target, container=None):
    return {"id": ident, "pid": pid, "tid": pid, "comm": "runc:[1:CHILD]", "tool": "runc",
            "container": container, "container_id": None, "types": list(target), "changed": list(target),
            "target": dict(target), "command": "ps aux", "command_source": "exec", "exec_pid": exec_pid,
            "start": start, "end": start + 0.01, "open": False, "housekeeping": None, "summary": "joined"}


def graph(namespaces=(), processes=(), joins=()):
    host = [ns(t, i) for t, i in HOST.items()]
    data = {"version": 7, "time": T0 + 100, "node": "host", "host_ns": dict(HOST_IDS),
            "namespaces": host + list(namespaces), "processes": [proc(1, HOST_IDS)] + list(processes),
            "containers": [], "joins": list(joins), "counters": {}}
    assert check_shape(data, GraphJSON) == []
    return data


def container_spaces(name, base_inode, created, creator_pid=None, creator_container=None):
    """The namespaces a `docker run` container got, named by the catalog (or not: name None)."""
    return [ns(t, base_inode + k, created=created + 0.01 * k, container=name,
               creator=runc(creator_pid, created, creator_container) if creator_pid else None)
            for k, t in enumerate(OWN_TYPES)]


def ids(spaces):
    return [n["id"] for n in spaces]


def run(scenario, started, ended, **fields):
    return Run(id="r-" + scenario, scenario=scenario, command="", status="succeeded",
               started=started, ended=ended, created=started, **fields)


def ls_output(spaces, user=HOST["user"]):
    """`ls -la /proc/self/ns/` as busybox prints it."""
    lines = ["lrwxrwxrwx 1 root root 0 Jan 1 00:00 %s -> %s:[%d]" % (n["type"], n["type"], n["inode"])
             for n in spaces]
    lines.append("lrwxrwxrwx 1 root root 0 Jan 1 00:00 user -> user:[%d]" % user)
    lines.append("lrwxrwxrwx 1 root root 0 Jan 1 00:00 pid_for_children -> pid:[%d]" % spaces[3]["inode"])
    return "\n".join(lines) + "\n"


# -- created: a run's own container -------------------------------------------------------------

def test_a_named_container_run_created_its_namespaces_and_joined_nothing():
    mine = container_spaces("nsgraph-demo-ls-ns-a", 4026532200, T0 + 1)
    data = graph(mine, [proc(900, {**HOST_IDS, **{n["type"]: n["id"] for n in mine}}, "nsgraph-demo-ls-ns-a")])
    out = namespaces_for_run(run("ls-ns", T0, T0 + 2, container="nsgraph-demo-ls-ns-a"), data)
    assert out["namespaces"]["created"] == ids(mine)
    # it stayed in the host's user namespace: that is neither made nor joined by the run
    assert out["namespaces"]["joined"] == []
    assert out["joins"] == []


def test_two_runs_at_once_each_get_their_own_container():
    a = container_spaces("nsgraph-demo-ls-ns-a", 4026532200, T0 + 1.0, creator_pid=501)
    b = container_spaces("nsgraph-demo-ls-ns-b", 4026532300, T0 + 1.2, creator_pid=502)
    data = graph(a + b)
    out_a = namespaces_for_run(run("ls-ns", T0, T0 + 2, container="nsgraph-demo-ls-ns-a"), data)
    out_b = namespaces_for_run(run("ls-ns", T0 + 0.5, T0 + 2.5, container="nsgraph-demo-ls-ns-b"), data)
    assert out_a["namespaces"] == {"created": ids(a), "joined": []}
    assert out_b["namespaces"] == {"created": ids(b), "joined": []}


def test_an_unnamed_container_is_found_by_the_inodes_it_printed():
    """`docker run --rm` is often gone before the catalog names it: its own output says which."""
    a = container_spaces(None, 4026532200, T0 + 1.0, creator_pid=501)
    b = container_spaces(None, 4026532300, T0 + 1.1, creator_pid=502)     # another demo, same moment
    data = graph(a + b)
    out = namespaces_for_run(run("ls-ns", T0, T0 + 2, container="gone", output=ls_output(a)), data)
    assert out["namespaces"]["created"] == ids(a)
    assert out["namespaces"]["joined"] == []            # the host's user namespace is not the run's
    assert not set(ids(b)) & set(out["namespaces"]["created"] + out["namespaces"]["joined"])


def test_observed_inodes_resolve_to_the_generation_alive_during_the_run():
    """Inodes are recycled at once: the run's net namespace is the one alive while it ran."""
    old = ns("net", 4026532400, gen=0, created=T0 - 50, ended=T0 - 10)
    new = ns("net", 4026532400, gen=1, created=T0 + 1)
    later = ns("net", 4026532400, gen=2, created=T0 + 30)
    data = graph([old, new, later])
    out = namespaces_for_run(run("ls-ns", T0, T0 + 2, observed_ns={"net": 4026532400}), data)
    assert out["namespaces"] == {"created": [new["id"]], "joined": []}


def test_a_namespace_made_before_the_run_was_joined_not_created():
    myapp_net = ns("net", 4026532500, created=T0 - 100, container="myapp")
    mine = [n for n in container_spaces("nsgraph-demo-shared-net-a", 4026532600, T0 + 1) if n["type"] != "net"]
    data = graph([myapp_net] + mine)
    out = namespaces_for_run(run("shared-net", T0, T0 + 2, container="nsgraph-demo-shared-net-a",
                                 output=ls_output(mine[:3] + [myapp_net] + mine[3:])), data)
    assert out["namespaces"]["created"] == ids(mine)
    assert myapp_net["id"] in out["namespaces"]["joined"]


def test_the_hosts_namespaces_are_neither_created_nor_joined_by_a_run():
    """--pid host keeps the container in the host's pid namespace: nothing was made or
    joined there (issue 15: a run shows exactly what its own container created or joined)."""
    data = graph()
    out = namespaces_for_run(run("host-pid", T0, T0 + 2, observed_ns={"pid": HOST["pid"]}), data)
    assert out["namespaces"] == {"created": [], "joined": []}


# -- many demos at once: the container the kernel saw at the creating call ------------------------

def test_containers_gone_at_once_keep_their_namespaces_however_many_ran_together():
    """Seven hostname-ip-ps runs launched 50 ms apart, each gone before anything was read and
    never named by the catalog: the runc creator alone is ambiguous (seven of them), the
    container the creating task was in is not.  The graph may know it by name or by the id
    prefix it had before Docker named it."""
    runs, spaces = [], []
    for k in range(7):
        name, cid = "nsgraph-demo-hostname-ip-ps-%d" % k, ("%x" % (0xabc0 + k)) * 16
        known_as = name if k % 2 else cid[:12]
        spaces.append(container_spaces(None, 4026532200 + 10 * k, T0 + 1 + 0.05 * k, creator_pid=500 + k,
                                       creator_container=known_as))
        runs.append(run("hostname-ip-ps", T0 + 0.05 * k, T0 + 2 + 0.05 * k, container=name, container_id=cid))
    data = graph([n for s in spaces for n in s])
    for r, mine in zip(runs, spaces):
        assert namespaces_for_run(r, data)["namespaces"] == {"created": ids(mine), "joined": []}


def test_a_recycled_inode_resolves_to_the_runs_own_namespace():
    """A neighbour's container, made while ours ran, got the inode ours printed (ours ended
    at once): ours is the one its own container made, although the neighbour's is newer."""
    a = container_spaces(None, 4026532200, T0 + 1.0, creator_pid=501, creator_container="nsgraph-demo-ls-ns-a")
    a = [dict(n, ended=T0 + 1.1, alive=False) for n in a]
    b = [dict(n, id=namespace_id(n["type"], DEV, n["inode"], 1), generation=1, created=T0 + 1.3, ended=None,
              alive=True, creator=runc(502, T0 + 1.3, "nsgraph-demo-ls-ns-b")) for n in a]
    data = graph(a + b)
    out = namespaces_for_run(run("ls-ns", T0, T0 + 2, container="nsgraph-demo-ls-ns-a", output=ls_output(a)), data)
    assert out["namespaces"] == {"created": ids(a), "joined": []}


# -- joined: join sessions of the run's own processes ----------------------------------------------

MYAPP = [ns(t, 4026532700 + k, created=T0 - 100, container="myapp") for k, t in
         enumerate(("ipc", "uts", "net", "pid", "mnt"))]
MYAPP_TARGET = {n["type"]: n["id"] for n in MYAPP}


def test_docker_exec_runs_get_the_join_of_their_own_command():
    """Two `docker exec myapp ps` at once: each run has the exec'd command's pid (exec_inspect)."""
    data = graph(MYAPP, joins=[join(1, 700, 701, T0 + 0.5, MYAPP_TARGET, "myapp"),
                               join(2, 710, 711, T0 + 0.6, MYAPP_TARGET, "myapp")])
    first = namespaces_for_run(run("exec-myapp", T0, T0 + 1, container="myapp", pids=[701],
                                   observed_ns={t: n["inode"] for t, n in zip(MYAPP_TARGET, MYAPP)}), data)
    second = namespaces_for_run(run("exec-myapp", T0, T0 + 1, container="myapp", pids=[711]), data)
    assert first["joins"] == [1] and second["joins"] == [2]
    assert first["namespaces"] == {"created": [], "joined": ids(MYAPP)}
    assert second["namespaces"] == {"created": [], "joined": list(MYAPP_TARGET.values())}


def test_exec_joins_myapps_namespaces_not_the_host_ones_it_shares():
    """myapp shares the host's user, time and (cgroup v1) cgroup namespaces; /proc/<myapp>/ns
    lists them, but `docker exec` joined only myapp's own."""
    data = graph(MYAPP, joins=[join(1, 700, 701, T0 + 0.5, MYAPP_TARGET, "myapp")])
    observed = {t: n["inode"] for t, n in zip(MYAPP_TARGET, MYAPP)}
    observed.update({t: HOST[t] for t in ("user", "cgroup")})
    out = namespaces_for_run(run("exec-myapp", T0, T0 + 1, container="myapp", pids=[701], observed_ns=observed),
                             data)
    assert out["namespaces"] == {"created": [], "joined": ids(MYAPP)}


def test_a_join_run_creates_nothing_even_when_its_target_is_new():
    """exec-myapp may have started myapp itself: its namespaces are still joined, not created."""
    fresh = [dict(n, created=T0 + 0.2) for n in MYAPP]
    data = graph(fresh, joins=[join(1, 700, 701, T0 + 0.5, MYAPP_TARGET, "myapp")])
    out = namespaces_for_run(run("exec-myapp", T0, T0 + 1, container="myapp", pids=[701]), data)
    assert out["namespaces"]["created"] == [] and out["namespaces"]["joined"] == ids(MYAPP)


def test_nsenter_runs_are_matched_by_the_nsenter_pid():
    target = {t: namespace_id(t, DEV, 4026532800 + k, 0) for k, t in enumerate(("uts", "net", "pid"))}
    spaces = [ns(t, 4026532800 + k, created=T0 - 5) for k, t in enumerate(("uts", "net", "pid"))]
    mine = join(3, 800, 801, T0 + 0.3, target)
    other = join(4, 810, 811, T0 + 0.4, target)            # a second nsenter demo, same target
    data = graph(spaces, joins=[mine, other])
    out = namespaces_for_run(run("nsenter-join", T0, T0 + 1, pids=[800],
                                 observed_ns={t: 4026532800 + k for k, t in enumerate(("uts", "net", "pid"))}),
                             data)
    assert out["joins"] == [3]
    assert out["namespaces"] == {"created": [], "joined": list(target.values())}


def test_a_reused_pid_outside_the_run_does_not_match():
    data = graph(MYAPP, joins=[join(1, 700, 701, T0 - 300, MYAPP_TARGET, "myapp")])
    out = namespaces_for_run(run("exec-myapp", T0, T0 + 1, container="myapp", pids=[701]), data)
    assert out["joins"] == [] and out["namespaces"] == {"created": [], "joined": []}


# -- the last resort: one runc, nothing else known ------------------------------------------------

def test_runc_creator_is_the_last_resort_only_when_unambiguous():
    a = container_spaces(None, 4026532200, T0 + 1.0, creator_pid=501)
    lone = graph(a)
    out = namespaces_for_run(run("hostname-ip-ps", T0, T0 + 2, container="gone"), lone)
    assert out["namespaces"]["created"] == ids(a)
    b = container_spaces(None, 4026532300, T0 + 1.1, creator_pid=502)
    both = graph(a + b)
    out = namespaces_for_run(run("hostname-ip-ps", T0, T0 + 2, container="gone"), both)
    assert out["namespaces"] == {"created": [], "joined": []}      # two runc: claim nothing


def test_the_last_resort_skips_namespaces_another_container_owns():
    mine = container_spaces(None, 4026532200, T0 + 1.0, creator_pid=501)
    theirs = container_spaces("nsgraph-demo-ls-ns-b", 4026532300, T0 + 1.1, creator_pid=502)
    data = graph(mine + theirs)
    out = namespaces_for_run(run("hostname-ip-ps", T0, T0 + 2, container="gone"), data)
    assert out["namespaces"]["created"] == ids(mine)


def test_no_graph_no_namespaces():
    empty = {"namespaces": {"created": [], "joined": []}, "joins": []}
    assert namespaces_for_run(run("ls-ns", T0, T0 + 1), None) == empty


def test_a_running_run_uses_now_for_its_end():
    late = container_spaces(None, 4026532200, T0 + 50)
    data = graph(late)
    active = Run(id="r", scenario="ls-ns", command="", status="running", started=T0, created=T0,
                 observed_ns={"net": late[4]["inode"]})
    assert namespaces_for_run(active, data, now=T0 + 10)["namespaces"]["created"] == []
    assert namespaces_for_run(active, data, now=T0 + 60)["namespaces"]["created"] == [late[4]["id"]]


# -- parsing the demo's own report ----------------------------------------------------------------

@pytest.mark.parametrize("output,expected", [
    ("lrwxrwxrwx 1 root root 0 Jan 1 00:00 net -> net:[4026532177]\n", {"net": 4026532177}),
    ("lrwxrwxrwx    1 root     root    0 Jan  1 00:00 pid_for_children -> pid:[4026532180]\n", {}),
    ("uts:[4026532171]\nnet:[4026532177]\npid:[4026532173]\n",
     {"uts": 4026532171, "net": 4026532177, "pid": 4026532173}),
    ("hostname\nnet:[notanumber]\nfoo:[12]\n  net:[5]\n", {}),
    ("", {}),
])
def test_links_in_output(output, expected):
    assert links_in_output(output) == expected


def test_a_namespace_of_the_runs_container_found_by_a_repair_after_the_run_was_created_by_it():
    # The snapshot of a repair showed the container's namespaces before their creating
    # event was applied: they carry the repair's time, after the run ended.
    mine = container_spaces("nsgraph-demo-ls-ns-r", 4026532300, T0 + 30)
    for n in mine:
        n["repaired"] = True
    before = ns("net", 4026532399, created=T0 - 50, container="nsgraph-demo-ls-ns-r")   # older: not the run's
    before["repaired"] = True
    data = graph(mine + [before], [proc(901, {**HOST_IDS, **{n["type"]: n["id"] for n in mine}}, "nsgraph-demo-ls-ns-r")])
    out = namespaces_for_run(run("ls-ns", T0, T0 + 2, container="nsgraph-demo-ls-ns-r"), data)
    assert out["namespaces"]["created"] == ids(mine)


def test_a_namespace_of_the_runs_container_known_only_from_proc_was_created_by_it():
    # A reconcile's snapshot showed them before the creating clone was applied: no
    # creator, no time stamp; the container is the run's own (its name has the run id).
    mine = container_spaces("nsgraph-demo-ls-ns-s", 4026532400, T0 + 1)
    for n in mine:
        n["created"] = None
    other = container_spaces("nsgraph-demo-ls-ns-t", 4026532500, T0 + 1)
    for n in other:
        n["created"] = None
    data = graph(mine + other, [proc(902, {**HOST_IDS, **{n["type"]: n["id"] for n in mine}}, "nsgraph-demo-ls-ns-s")])
    out = namespaces_for_run(run("ls-ns", T0, T0 + 2, container="nsgraph-demo-ls-ns-s"), data)
    assert out["namespaces"]["created"] == ids(mine)


class _LateLogs:
    """A container whose log copier writes its output only after `wait` answered."""

    def __init__(self, empty_reads: int, text: bytes = b"net -> net:[4026532000]\n"):
        self.empty_reads, self.text, self.reads = empty_reads, text, 0

    def logs(self, stdout: bool, stderr: bool) -> bytes:
        self.reads += 1
        return b"" if self.reads <= self.empty_reads else self.text


def test_empty_logs_of_a_successful_container_are_read_again():
    from webapp.demos.runner import container_output
    late = _LateLogs(empty_reads=3)
    assert container_output(late, 0, settle_s=2.0) == late.text
    assert late.reads == 4


def test_empty_logs_are_believed_after_the_bound_or_on_failure():
    from webapp.demos.runner import container_output
    never = _LateLogs(empty_reads=10 ** 6)
    assert container_output(never, 0, settle_s=0.3) == b""
    assert 2 <= never.reads <= 5
    failed = _LateLogs(empty_reads=10 ** 6)
    assert container_output(failed, 1, settle_s=2.0) == b""
    assert failed.reads == 1
