"""How many system calls one storm operation makes, counted by the kernel.

A BPF counter on raw_syscalls:sys_enter counts only the tasks of one cgroup v2,
made for the count: the workload moves itself in before it execs, its children
stay there, and nothing else on the host is counted.  The workload runs twice,
with N and 2N operations, so the calls of its own start-up and exit cancel out.

bench_probe_cost.py uses it for its estimate: every system call of a task pays the
syscall tracepoints' slow path while any syscall tracepoint is attached (measured
on getppid), so the floor's cost per operation is that times the calls it makes,
plus the empty programs' run time.
"""

from __future__ import annotations

import os
import subprocess
import time

COUNTER = r"""
BPF_ARRAY(calls, u64, 1);

TRACEPOINT_PROBE(raw_syscalls, sys_enter)
{
	if (bpf_get_current_cgroup_id() != CGROUP_ID)
		return 0;
	int key = 0;
	u64 *n = calls.lookup(&key);
	if (n)
		__sync_fetch_and_add(n, 1);
	return 0;
}
"""


class CountError(Exception):
    """The count cannot be made here (the message says why and what to do)."""


def _cgroup2_root() -> str:
    """Where cgroup v2 is mounted: /sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid host."""
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 2 and fields[2] == "cgroup2":
                return fields[1]
    raise CountError("no cgroup v2 file system is mounted (the count needs one: "
                     "mount -t cgroup2 none /sys/fs/cgroup/unified)")


def _cgroup() -> str:
    path = os.path.join(_cgroup2_root(), "nsgraph-bench-calls-%d" % os.getpid())
    os.mkdir(path)
    return path


def _run_in(cgroup: str, argv, cpus) -> None:
    procs = os.path.join(cgroup, "cgroup.procs")

    def enter():
        with open(procs, "w") as f:
            f.write("0")            # "0": the writing process itself
        os.sched_setaffinity(0, cpus)
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, preexec_fn=enter)


def per_operation(workload: str, modes_counts: dict, cpus) -> dict:
    """mode -> system calls per operation, for {workload mode: N operations}."""
    from bcc import BPF
    cgroup = _cgroup()
    try:
        bpf = BPF(text=COUNTER.replace("CGROUP_ID", "%dULL" % os.stat(cgroup).st_ino).encode())
        try:
            calls = bpf["calls"]
            key = calls.Key(0)
            out = {}
            for mode, n in modes_counts.items():
                counted = []
                for ops in (n, 2 * n):
                    before = calls[key].value
                    _run_in(cgroup, [workload, mode, str(ops)], cpus)
                    counted.append(calls[key].value - before)
                out[mode] = (counted[1] - counted[0]) / n
            return out
        finally:
            bpf.cleanup()
    finally:
        for _ in range(50):         # the last child may still be leaving the cgroup
            try:
                os.rmdir(cgroup)
                break
            except OSError:
                time.sleep(0.1)
