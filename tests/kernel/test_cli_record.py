"""`nsgraph record` and `nsgraph replay` as a user runs them (root, the real kernel).

The recorder must be attached before the probes start (NsgraphService.start's
on_graph), so a namespace made while recording is in the replayed graph with
its creator; ground truth is the workload's own /proc/self/ns reading.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NSGRAPH = [sys.executable, "-m", "tracer.cli"]


def test_record_then_replay_shows_a_namespace_made_meanwhile(root, tmp_path):
    path = str(tmp_path / "rec.jsonl")
    rec = subprocess.Popen(NSGRAPH + ["record", path, "--duration", "60", "--no-docker"], cwd=REPO,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = rec.stderr.readline()
            lines.append(line)
            if not line or line.strip() == "nsgraph record: running":
                break
        assert lines and lines[-1].strip() == "nsgraph record: running", "".join(lines) + rec.stderr.read()
        child = subprocess.run(["unshare", "--uts", "sh", "-c", "echo $$; readlink /proc/self/ns/uts"],
                               capture_output=True, text=True, check=True, timeout=10)
        pid, link = child.stdout.split()
        inode = int(link.split("[")[1][:-1])
        time.sleep(0.5)
    finally:
        rec.send_signal(2)
        out, err = rec.communicate(timeout=30)
    assert rec.returncode == 0, err
    assert "inputs written to %s" % path in err and "dropped" not in err

    with open(path) as f:
        header, state = json.loads(f.readline()), json.loads(f.readline())
    assert header["format"] == "nsgraph-record" and state["kind"] == "state"
    assert state["data"]["namespaces"], "the state line holds the snapshot the probes started from"

    done = subprocess.run(NSGRAPH + ["replay", path, "--json"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    graph = json.loads(done.stdout)
    made = [n for n in graph["namespaces"] if n["type"] == "uts" and n["inode"] == inode
            and (n["creator"] or {}).get("pid") == int(pid)]
    assert len(made) == 1, [n for n in graph["namespaces"] if n["inode"] == inode]
    assert made[0]["creator"]["syscall"] == "unshare" and made[0]["creator"]["flags"] == ["CLONE_NEWUTS"]
    assert graph["counters"]["replay_skipped_lines"] == 0
    assert graph["counters"]["internal_errors"] == 0 and graph["counters"]["rejected"] == 0

    table = subprocess.run(NSGRAPH + ["replay", path], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert table.returncode == 0 and table.stdout.strip(), table.stderr
