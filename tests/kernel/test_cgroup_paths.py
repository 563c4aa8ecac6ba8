"""The probes remember each cgroup v2 path at mkdir, so a cgroup that is gone can still be named."""

from __future__ import annotations

import os
import secrets
import time

from tests.conftest import require
from tracer.containers.attribution import CgroupIds
from tracer.containers.cgroups import cgroup2_mount


def test_a_removed_cgroup_keeps_its_path(live_events):
    root = cgroup2_mount()
    require(root is not None, "no cgroup v2 hierarchy is mounted")
    name = "nsgtest-cgroup-" + secrets.token_hex(4)
    path = os.path.join(root, name)
    os.mkdir(path)
    try:
        cgroup_id = os.stat(path).st_ino       # ground truth: cgroupfs's own inode number
    finally:
        os.rmdir(path)
    probes = live_events.collector.probes
    deadline = time.time() + 2
    found = None
    while time.time() < deadline and found is None:
        found = probes.cgroup_path(cgroup_id)
        time.sleep(0.05)
    assert found == "/" + name
    # Without the probes' record, a scan of the hierarchy cannot know it any more.
    assert CgroupIds(root=root).path(cgroup_id) is None
    assert CgroupIds(root=root, kernel_lookup=probes.cgroup_path).path(cgroup_id) == "/" + name
    assert probes.cgroup_path(2 ** 63) is None
