"""Where a fleet's latency accrues, sampled while bench_fleet's latency phase runs.

Every `every_s`, for each node, from the dashboard's view of it (the agent's last
heartbeat and the node's replica):
  outbox_msgs / outbox_age_s   messages the agent has not had acknowledged yet, and the age of
                               the oldest (the agent's side: batching, publishing, JetStream)
  ack_latency_s                the agent's last publish: newest record journaled -> acknowledged
  replica_behind               records the agent had taken that the replica had not applied
                               (the dashboard's side: fetch, decode, replay)
And the CPU each process used over the load (cores = CPU seconds / wall seconds).
"""

from __future__ import annotations

import os
import threading
import time


def cpu_s(pid: int) -> float:
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds of named processes between start() and stop(), as cores."""

    def __init__(self, pids: dict):
        self.pids = pids
        self.t0 = self.c0 = None

    def start(self) -> "CpuMeter":
        self.t0 = time.monotonic()
        self.c0 = {name: cpu_s(pid) for name, pid in self.pids.items()}
        return self

    def stop(self) -> dict:
        wall = time.monotonic() - self.t0
        out = {}
        for name, pid in self.pids.items():
            try:
                out[name] = round((cpu_s(pid) - self.c0[name]) / wall, 3)
            except OSError:
                out[name] = None
        out["total"] = round(sum(v for v in out.values() if v), 3)
        return out


class Where(threading.Thread):
    def __init__(self, dashboard, nodes, every_s: float = 1.0):
        super().__init__(daemon=True)
        self.dashboard, self.nodes, self.every_s = dashboard, list(nodes), every_s
        self.samples = {n: [] for n in self.nodes}
        self.stop = False

    def run(self) -> None:
        while not self.stop:
            for node in self.nodes:
                try:
                    row = self.dashboard.get("/api/fleet/nodes/%s" % node)
                except (OSError, ValueError):
                    continue
                hb = row.get("heartbeat") or {}
                outbox, publisher = hb.get("outbox") or {}, hb.get("publisher") or {}
                self.samples[node].append({
                    "outbox_msgs": outbox.get("buffered_messages", 0), "outbox_age_s": outbox.get("oldest_age_s", 0.0),
                    "ack_latency_s": publisher.get("last_ack_latency_s") or 0.0,
                    "replica_behind": max(0, (hb.get("seq") or 0) - (row["replica"].get("seq") or 0))})
            time.sleep(self.every_s)

    def summary(self) -> dict:
        out = {}
        for node, rows in self.samples.items():
            if not rows:
                continue
            out[node] = {key: {"median": _median([r[key] for r in rows]), "max": max(r[key] for r in rows)}
                         for key in rows[0]}
            out[node]["samples"] = len(rows)
        return out


def _median(values):
    s = sorted(values)
    return s[len(s) // 2] if s else None
