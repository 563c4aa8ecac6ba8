"""A full disk under `nsgraph record` and under the history database (issue 11).

A small tmpfs the test mounts (and unmounts) is the disk.  `record` must stop at once
with one line (the error, how much was written) and exit 1, never a traceback; the
history store must count the failure, say so in /api/status with what to do, and keep
the service running.  Both need root: the mount, and record's probes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tracer.exitcodes import EXIT_FAILURE
from tracer.history.store import HistoryStore
from web_fixtures import World, authed, serving

pytestmark = pytest.mark.host_only     # the VM image has no Flask (the history half serves /api/status)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def small_disk(root, tmp_path):
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "nsgraph-test", str(mountpoint)],
                   check=True, timeout=30)
    yield mountpoint
    subprocess.run(["umount", "-l", str(mountpoint)], check=False, timeout=30)


def test_record_on_a_full_disk_stops_with_one_line_and_exit_1(small_disk):
    out = small_disk / "trace.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "tracer.cli", "record", str(out), "--duration", "120",
                             "--no-docker"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Events enough to fill 256 KB: short-lived processes, bounded in number and time.
    deadline = time.monotonic() + 100
    while proc.poll() is None and time.monotonic() < deadline:
        subprocess.run(["sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do /bin/true; done"], timeout=30)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == EXIT_FAILURE, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("nsgraph record: writing %s failed: No space left on device; stopped after " % out), err
    assert "nsgraph replay reads it" in last


def test_history_on_a_full_disk_is_reported_and_the_service_keeps_running(small_disk):
    world = World()
    store = HistoryStore(str(small_disk / "history.db")).open()
    store.attach(world.graph)
    store.start()
    try:
        _app, client = authed(serving(world, store))
        deadline = time.monotonic() + 60
        while store.error is None and time.monotonic() < deadline:
            # Incompressible exec arguments, so the blocks cannot shrink below the disk.
            world.graph.apply_batch([world.event("exec", 50, filename="/bin/x", args=[os.urandom(2000).hex()])
                                     for _ in range(20)])
            time.sleep(0.05)
        status = client.get("/api/status").get_json()
        assert status["state"] == "running"
        messages = [h["message"] for h in status["health"] if h["check"] == "history"]
        assert len(messages) == 1, status
        assert "disk is full" in messages[0] and str(small_disk) in messages[0]
        assert store.stats()["write_errors"] >= 1
        metrics = client.get("/metrics").get_data(as_text=True)
        dropped = [line for line in metrics.splitlines() if line.startswith("nsgraph_history_dropped_inputs_total ")]
        assert len(dropped) == 1 and int(dropped[0].split()[1]) >= 1, metrics
    finally:
        store.close()
