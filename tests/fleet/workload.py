"""A namespace workload for the fleet tests, with util-linux's unshare and nsenter.

Standard library only: it runs on the host and inside the kernel-matrix VM.  Every
loop is bounded in count and time.
"""

from __future__ import annotations

import subprocess
import time

LIMIT_S = 120


def burst(n: int, deadline_s: float = LIMIT_S, pause_s: float = 0.0) -> dict:
    """n new uts namespaces, one process each, gone at once.

    {"pids": the unshare processes that made one, "t0", "t1"}: each pid must show up in
    the node's graph as the creator of a uts namespace (alive or ended).
    """
    t0 = time.time()
    end = time.monotonic() + deadline_s
    pids = []
    for _ in range(n):
        if time.monotonic() > end:
            break
        proc = subprocess.Popen(["unshare", "--uts", "true"])
        if proc.wait(30) == 0:
            pids.append(proc.pid)
        if pause_s:
            time.sleep(pause_s)
    return {"pids": pids, "t0": t0, "t1": time.time()}


def holders(k: int, seconds: float) -> list:
    """k processes that each sit in new uts, net and ipc namespaces for `seconds`."""
    return [subprocess.Popen(["unshare", "--uts", "--net", "--ipc", "sleep", str(int(seconds))])
            for _ in range(k)]


def join(pid: int) -> int:
    """setns into pid's net and uts namespaces (nsenter), run `true`."""
    return subprocess.run(["nsenter", "-t", str(pid), "-n", "-u", "true"], timeout=30).returncode


def stop(procs) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
