"""A process storm: what a busy host looks like to a tracer, bounded in time and count.

Other people's processes come and go all the time on a CI host.  This makes that
happen on purpose: short-lived commands (fork + exec + exit), processes that live
a random fraction of a second, and children that unshare a uts namespace (so
namespaces come and go too), from a few workers in parallel.  Nothing here uses
nsgraph code, and nothing touches the network.

    python3 storm.py --duration 60 [--workers 3] [--max-spawns 200000]

From a test: `with Storm(duration=120): ...` (the storm runs in its own session;
leaving the block kills the whole group).  Exit status 0; each worker says on stderr
how many processes it started.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import random
import signal
import subprocess
import sys
import time

CLONE_NEWUTS = 0x04000000


def _unshare_child() -> None:
    """A child that gets a namespace of its own, lives briefly, and exits."""
    pid = os.fork()
    if pid == 0:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.unshare(CLONE_NEWUTS)      # fails quietly without root: still a process
            time.sleep(random.uniform(0.0, 0.3))
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def worker(deadline: float, budget: int, seed: int) -> int:
    rng = random.Random(seed)
    started = 0
    sleepers = []
    while time.monotonic() < deadline and started < budget:
        choice = rng.random()
        if choice < 0.6:
            subprocess.run(["true"], check=False)
        elif choice < 0.85:
            sleepers.append(subprocess.Popen(["sleep", "%.2f" % rng.uniform(0.05, 1.5)]))
        else:
            _unshare_child()
        started += 1
        sleepers = [p for p in sleepers if p.poll() is None]
        if len(sleepers) > 30:
            sleepers.pop(0).wait()
        time.sleep(rng.uniform(0.0, 0.01))
    for p in sleepers:
        p.wait()
    return started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="a bounded process storm")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds (at most 3600)")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--max-spawns", type=int, default=500_000, help="per worker")
    args = parser.parse_args(argv)
    duration = min(max(args.duration, 0.0), 3600.0)
    deadline = time.monotonic() + duration
    children = []
    for n in range(max(1, args.workers)):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            count = worker(deadline, args.max_spawns, seed=os.getpid() + n)
            print("storm worker %d: %d processes started" % (n, count), file=sys.stderr, flush=True)
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)
    print("storm: %d workers for %.0f s" % (len(children), duration), file=sys.stderr)
    return 0


class Storm:
    """Run storm.py in its own session for at most `duration` seconds."""

    def __init__(self, duration: float = 120.0, workers: int = 3):
        self.argv = [sys.executable, os.path.abspath(__file__), "--duration", str(duration),
                     "--workers", str(workers)]
        self.proc = None

    def __enter__(self) -> "Storm":
        self.proc = subprocess.Popen(self.argv, start_new_session=True, stdout=subprocess.DEVNULL)
        return self

    def __exit__(self, *exc) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


if __name__ == "__main__":
    sys.exit(main())
