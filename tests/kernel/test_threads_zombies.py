"""Namespaces only a thread holds (issue 10 item 2): a C helper whose threads call
unshare on their own, traced live, reconciled and snapshotted.  Ground truth:
/proc/<pid>/task/<tid>/ns/* (lsns reads /proc/<pid>/ns only, so it cannot see them)."""

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


@pytest.fixture(scope="module")
def helper(tmp_path_factory):
    cc = shutil.which("gcc") or shutil.which("cc")
    require(cc is not None, "no C compiler (apt-get install gcc libc6-dev)")
    tmp = tmp_path_factory.mktemp("threads")
    src, exe = tmp / "threads.c", tmp / "threads"
    src.write_text(THREADS_C)
    subprocess.run([cc, "-O1", "-pthread", "-o", str(exe), str(src)], check=True)
    return str(exe)


@pytest.fixture(scope="module")
def service(root):
    from tracer.service import NsgraphService, ServiceConfig
    svc = NsgraphService(ServiceConfig(db="none", docker=False, reconcile_s=3600))
    assert svc.start(), svc.status.error
    yield svc
    svc.stop()


def task_ns(pid, tid, t):
    return os.stat("/proc/%d/task/%d/ns/%s" % (pid, tid, t)).st_ino


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
