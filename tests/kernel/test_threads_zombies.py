"""Namespaces only a thread holds (issue 10 item 2): a C helper whose threads call
unshare on their own, traced live, reconciled and snapshotted, and ended once the
helper exits.  Ground truth: /proc/<pid>/task/<tid>/ns/* (lsns reads /proc/<pid>/ns
only, so it cannot see them).  Zombies (item 8): a C helper whose child, pid 1 of a
new pid namespace, exits unreaped; ground truth /proc/<pid>/stat and `lsns -J`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from conftest import require, wait_until

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NSGRAPH = os.path.join(REPO, ".venv", "bin", "nsgraph")

THREADS_C = r"""
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

static pthread_barrier_t ready;
static int flags[2] = {CLONE_NEWNS | CLONE_FILES, CLONE_NEWNET | CLONE_NEWUTS};
static long tids[2];

static void *run(void *arg) {
    int i = *(int *)arg;
    if (unshare(flags[i]) != 0) { perror("unshare"); _exit(2); }
    tids[i] = syscall(SYS_gettid);
    pthread_barrier_wait(&ready);
    pause();
    return NULL;
}

int main(void) {
    pthread_t t[2];
    int idx[2] = {0, 1};
    pthread_barrier_init(&ready, NULL, 3);
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, run, &idx[i]);
    pthread_barrier_wait(&ready);
    printf("%d %ld %ld\n", getpid(), tids[0], tids[1]);
    fflush(stdout);
    char c;
    while (read(0, &c, 1) > 0) {}        /* until the test closes stdin */
    return 0;
}
"""


ZOMBIE_C = r"""
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
    if (unshare(CLONE_NEWPID) != 0) { perror("unshare"); return 2; }
    pid_t child = fork();
    if (child < 0) { perror("fork"); return 2; }
    if (child == 0) _exit(0);            /* pid 1 of the new pid namespace, at once */
    printf("%d %d\n", getpid(), child);
    fflush(stdout);
    char c;
    if (read(0, &c, 1) < 0) return 2;   /* a line from the test: reap it now */
    waitpid(child, NULL, 0);
    printf("reaped\n");
    fflush(stdout);
    while (read(0, &c, 1) > 0) {}        /* until the test closes stdin */
    return 0;
}
"""


def compile_c(tmp_path_factory, name, source):
    cc = shutil.which("gcc") or shutil.which("cc")
    require(cc is not None, "no C compiler (apt-get install gcc libc6-dev)")
    tmp = tmp_path_factory.mktemp(name)
    src, exe = tmp / (name + ".c"), tmp / name
    src.write_text(source)
    subprocess.run([cc, "-O1", "-pthread", "-o", str(exe), str(src)], check=True)
    return str(exe)


@pytest.fixture(scope="module")
def helper(tmp_path_factory):
    return compile_c(tmp_path_factory, "threads", THREADS_C)


@pytest.fixture(scope="module")
def zombie_helper(tmp_path_factory):
    return compile_c(tmp_path_factory, "zombie", ZOMBIE_C)


@pytest.fixture(scope="module")
def service(root):
    from tracer.service import NsgraphService, ServiceConfig
    svc = NsgraphService(ServiceConfig(db="none", docker=False, reconcile_s=3600))
    assert svc.start(), svc.status.error
    yield svc
    svc.stop()


def task_ns(pid, tid, t):
    return os.stat("/proc/%d/task/%d/ns/%s" % (pid, tid, t)).st_ino


def held_anywhere(refs) -> set:
    """The (type, inode) of refs that some task in /proc is in now."""
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            tids = os.listdir("/proc/%s/task" % pid)
        except OSError:
            continue
        for tid in tids:
            for t, inode in refs:
                try:
                    if os.stat("/proc/%s/task/%s/ns/%s" % (pid, tid, t)).st_ino == inode:
                        found.add((t, inode))
                except OSError:
                    pass
    return found


def proc_state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def lsns_pid(inode):
    """lsns's row for pid namespace inode (it counts zombies), or None."""
    out = subprocess.run(["lsns", "-J", "-t", "pid", "-o", "NS,NPROCS,PID"], capture_output=True, text=True,
                         check=True).stdout
    rows = [r for r in json.loads(out)["namespaces"] if int(r["ns"]) == inode]
    return rows[0] if rows else None


def thread_truth(pid, tids):
    """(type, inode) -> tid for every namespace a thread holds that its process does not."""
    out = {}
    for tid in tids:
        for t in ("mnt", "net", "uts"):
            inode = task_ns(pid, tid, t)
            if inode != os.stat("/proc/%d/ns/%s" % (pid, t)).st_ino:
                out[(t, inode)] = tid
    return out


@pytest.mark.host_only     # the VM image has no C compiler for the thread helper
def test_thread_held_namespaces_live_reconciled_and_snapshotted(service, helper):
    proc = subprocess.Popen([helper], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        pid, tid_mnt, tid_net = map(int, proc.stdout.readline().split())
        truth = thread_truth(pid, (tid_mnt, tid_net))
        # The kernel's view: thread 1 has its own mnt, thread 2 its own net and uts.
        assert sorted(t for t, _ in truth) == ["mnt", "net", "uts"], truth
        graph = service.graph

        def modelled():
            for (t, inode), tid in truth.items():
                ns = graph.namespace("%s:%d" % (t, inode))
                if ns is None or not ns["alive"] or ns["tids"] != [tid] or pid in ns["pids"]:
                    return False
            return True
        assert wait_until(modelled), [graph.namespace("%s:%d" % k) for k in truth]
        # Their full ids (type:dev:inode:generation): once they end, the kernel hands the
        # inode numbers out again at once, and "type:inode" then names the next namespace.
        ids = {k: graph.namespace("%s:%d" % k)["id"] for k in truth}

        # A full reconcile (the periodic one) must not end them: they still exist.
        service.reconcile(full=True)
        service.settle()
        assert modelled(), [graph.namespace("%s:%d" % k) for k in truth]
        assert thread_truth(pid, (tid_mnt, tid_net)) == truth

        # A fresh snapshot (the CLI) shows them, with the thread as their member.
        out = subprocess.run([NSGRAPH, "snapshot", "--json", "--no-docker"], capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr
        spaces = {(n["type"], n["inode"]): n for n in json.loads(out.stdout)["namespaces"]}
        for (t, inode), tid in truth.items():
            assert (t, inode) in spaces, "snapshot lacks the %s namespace of thread %d" % (t, tid)
            assert spaces[(t, inode)]["tids"] == [tid] and spaces[(t, inode)]["pids"] == []
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)

    # The helper is gone, and with it its threads' namespaces: no task holds them any more.
    assert not held_anywhere(truth), held_anywhere(truth)

    def ended():
        return all(graph.namespace(ident)["alive"] is False for ident in ids.values())
    assert wait_until(ended, timeout=20), ([{k: graph.namespace(i)[k] for k in ("id", "alive", "pending_end", "tids")}
                                            for i in ids.values()], service.timings)


@pytest.mark.host_only     # the VM image has no C compiler for the helper
def test_a_zombie_is_a_member_of_its_pid_namespace_until_reaped(service, zombie_helper):
    proc = subprocess.Popen([zombie_helper], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        parent, child = map(int, proc.stdout.readline().split())
        assert wait_until(lambda: proc_state(child) == "Z"), proc_state(child)
        inode = os.stat("/proc/%d/ns/pid" % child).st_ino      # a zombie keeps its pid link
        assert inode != os.stat("/proc/%d/ns/pid" % parent).st_ino
        row = lsns_pid(inode)
        assert row is not None and int(row["nprocs"]) == 1 and int(row["pid"]) == child, row
        graph = service.graph

        def member():
            ns = graph.namespace("pid:%d" % inode)
            return ns is not None and ns["alive"] and ns["pids"] == [child] and \
                (graph.process(child) or {}).get("zombie") is True
        assert wait_until(member), (graph.namespace("pid:%d" % inode), graph.process(child))
        ident = graph.namespace("pid:%d" % inode)["id"]

        out = subprocess.run([NSGRAPH, "snapshot", "--json", "--no-docker"], capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr
        spaces = {(n["type"], n["inode"]): n for n in json.loads(out.stdout)["namespaces"]}
        assert spaces[("pid", inode)]["pids"] == [child]       # lsns's count, the zombie included

        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "reaped"
        assert proc_state(child) is None and lsns_pid(inode) is None
        # Reaped: no member left; the helper's pid_for_children still holds the namespace.
        assert os.stat("/proc/%d/ns/pid_for_children" % parent).st_ino == inode
        assert wait_until(lambda: graph.process(child) is None and graph.namespace(ident)["pids"] == []), \
            (graph.namespace(ident), graph.process(child))
        assert graph.namespace(ident)["alive"]
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
