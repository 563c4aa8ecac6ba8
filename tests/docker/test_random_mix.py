"""The randomized end-to-end check (issue 10): a seeded random mix of docker run/exec/rm
(with --network/--pid container:X), unshare, nsenter, ip netns, a user namespace made by
uid 65534, threads that unshare, and podman, while a real `nsgraph serve` runs; then its
live graph (HTTP API), a fresh `nsgraph snapshot --json` and `lsns -J` are compared with
/proc, /proc/PID/task/*/ns, docker/podman inspect and /run/netns, namespace by namespace
(tests/workloads/mix_check.py).  The seed is printed; NSGRAPH_MIX_SEED replays one."""

from __future__ import annotations

import os

from conftest import require
from workloads.mix_check import run_checked_mix
from workloads.podman_env import podman_available


def test_a_random_mix_is_modelled_as_the_system_shows_it(root, docker_client, tmp_path):
    require(podman_available(), "podman is not installed (apt-get install podman; scripts/setup.sh test does)")
    seed = int(os.environ["NSGRAPH_MIX_SEED"]) if os.environ.get("NSGRAPH_MIX_SEED") else None
    lines = []

    def log(text):
        lines.append(text)
        print(text)
    problems = run_checked_mix(seed, duration=float(os.environ.get("NSGRAPH_MIX_SECONDS", "45")), log=log,
                               use_podman=True, workdir=str(tmp_path))
    assert not problems, "\n".join([lines[0]] + [l for l in lines if l.startswith("  seed")])
