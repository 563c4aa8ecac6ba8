"""NamespaceGraph performance: event rate, memory over 1M events, serialisation, scaling.

Synthetic but kernel-like input: a host with N processes (a few hundred in
namespaces of their own), then a stream of forks, execs, exits and unshares
whose inodes are recycled the way Linux recycles them.  Like tracer.events.decode.Decoder,
events with the same namespaces share one read-only map (--copied-maps gives each
event its own dict instead, as the first version of this benchmark did).  Offline
graph (its default ReplayProcReader), so /proc is never read and only the model is measured.

    .venv/bin/python bench/bench_graph.py            # everything (~1 min)
    .venv/bin/python bench/bench_graph.py --quick    # fewer events
    .venv/bin/python bench/bench_graph.py --rate-only --repeat 5   # event rate only, median of 5

Targets (issue 3): >= 200 000 events/s; <= 100 MB growth over 1 000 000 events
with the default retention; a 5 000-namespace graph serialises in <= 100 ms.
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import os
import random
import statistics
import sys
import time
from types import MappingProxyType

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tracer import nstypes  # noqa: E402
from tracer.events.event import Event  # noqa: E402
from tracer.exitcodes import EXIT_OK  # noqa: E402
from tracer.graph.model import NamespaceGraph  # noqa: E402
from tracer.host.snapshot import NsInfo, ProcInfo, Snapshot  # noqa: E402

DEV = 4
SLOTS = nstypes.NS_SLOTS
HOST = {"mnt": 1000, "pid": 1001, "pid_for_children": 1001, "net": 1002, "uts": 1003, "ipc": 1004,
        "user": 1005, "cgroup": 1006, "time": 1007, "time_for_children": 1007}


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class World:
    """Processes and their namespace sets, emitting the events the probes would."""

    def __init__(self, n_procs: int, own_ns_procs: int = 0, seed: int = 1, shared_maps: bool = True):
        self.rng = random.Random(seed)
        self.shared_maps = shared_maps
        self._maps = {}
        self.procs = {}
        self.next_inode = 5000
        self.free_inodes = []
        self.refs = collections.Counter()
        self.seq = 0
        self.ts = 1.7e9
        self.next_pid = 10
        namespaces = {}
        for slot, inode in HOST.items():
            t = slot.replace("_for_children", "")
            namespaces[(t, DEV, inode)] = NsInfo(t, inode, DEV, ns_id=inode, owner_inode=None if t == "user" else 1005)
        for i in range(n_procs):
            ns = dict(HOST)
            if i < own_ns_procs:
                for t in ("net", "uts", "ipc", "mnt", "pid"):
                    inode = self._alloc()
                    ns[t] = inode
                    if t == "pid":
                        ns["pid_for_children"] = inode
                    namespaces[(t, DEV, inode)] = NsInfo(t, inode, DEV, ns_id=inode, owner_inode=1005,
                                                         parent_inode=1001 if t == "pid" else None)
            self._add(self._pid(), ns)
        procs = {pid: ProcInfo(pid, 1, 0, "p", ["/bin/p", "--x"], pid, "0::/", {s: (DEV, v) for s, v in ns.items()})
                 for pid, ns in self.procs.items()}
        self.snapshot = Snapshot(self.ts, procs, namespaces, collections.Counter())

    def _pid(self):
        self.next_pid += 1
        if self.next_pid > 4_000_000:
            self.next_pid = 10
        while self.next_pid in self.procs:
            self.next_pid += 1
        return self.next_pid

    def _alloc(self):
        if self.free_inodes:
            return self.free_inodes.pop()
        self.next_inode += 1
        return self.next_inode

    def _add(self, pid, ns):
        self.procs[pid] = ns
        for v in ns.values():
            self.refs[v] += 1

    def _drop(self, ns):
        for v in ns.values():
            self.refs[v] -= 1
            if self.refs[v] == 0 and v >= 5000:
                del self.refs[v]
                self.free_inodes.append(v)      # the kernel hands it out again at once

    def _map(self, ns):
        """The event's view of ns: shared and read-only per distinct set, as the Decoder
        makes them (its cache also holds 4096 sets and is cleared when full)."""
        if not self.shared_maps:
            return dict(ns)
        key = tuple(ns.get(s, 0) for s in SLOTS)
        m = self._maps.get(key)
        if m is None:
            if len(self._maps) >= 4096:
                self._maps.clear()
            m = self._maps[key] = MappingProxyType(dict(ns))
        return m

    def _ev(self, kind, pid, ns, before=None, **kw):
        self.seq += 1
        self.ts += 0.00001
        return Event(kind=kind, seq=self.seq, ts=self.ts, pid=pid, tid=pid, ppid=1, uid=0, vpid=pid,
                     comm="p", ns=ns, ns_before=before, **kw)

    def events(self, n: int):
        rng = self.rng
        pids = list(self.procs)
        out = []
        for _ in range(n):
            r = rng.random()
            if r < 0.34 or len(pids) < 50:
                parent = pids[rng.randrange(len(pids))]
                ns = self.procs[parent]
                child = self._pid()
                self._add(child, dict(ns))
                pids.append(child)
                view = self._map(ns)
                out.append(self._ev("clone", parent, view, view if self.shared_maps else ns, syscall="clone",
                                    raw_flags=0x1200011, child_pid=child))
            elif r < 0.64:
                pid = pids[rng.randrange(len(pids))]
                out.append(self._ev("exec", pid, self._map(self.procs[pid]), filename="/bin/true"))
            elif r < 0.98:
                i = rng.randrange(len(pids))
                pid = pids[i]
                pids[i] = pids[-1]
                pids.pop()
                self._drop(self.procs.pop(pid))
                out.append(self._ev("exit", pid, self._map({})))
            else:
                pid = pids[rng.randrange(len(pids))]
                before = self.procs[pid]
                after = dict(before)
                t = rng.choice(("uts", "net", "ipc"))
                after[t] = self._alloc()
                self.refs[after[t]] += 1
                self.procs[pid] = after
                self._drop({t: before[t]})
                out.append(self._ev("unshare", pid, self._map(after),
                                    self._map(before) if self.shared_maps else before,
                                    syscall="unshare", raw_flags=nstypes.TYPE_FLAGS[t]))
        return out


def apply_rate(n_procs: int, n_events: int, batch: int = 0, shared_maps: bool = True) -> tuple:
    """(events/s wall, events/s per CPU second): apply() per event, or apply_batch() in
    batches of `batch` events (as a collector handing over each poll's events would)."""
    world = World(n_procs, shared_maps=shared_maps)
    events = world.events(n_events)
    # The collector streams events and drops them; a list of 200 000 made up front would
    # be scanned by every full garbage collection.  Freeze it (and the world) out of the
    # collector's sight, and build the model after, so its own objects are still counted.
    gc.collect()
    gc.freeze()
    g = NamespaceGraph(dev=DEV)
    g.load_snapshot(world.snapshot)
    t, c = time.perf_counter(), time.process_time()
    if batch:
        apply_batch = g.apply_batch
        for i in range(0, n_events, batch):
            apply_batch(events[i:i + batch])
    else:
        apply = g.apply
        for e in events:
            apply(e)
    dt, dc = time.perf_counter() - t, time.process_time() - c
    gc.unfreeze()
    assert g.counters["rejected"] == 0
    return n_events / dt, n_events / dc


def rates(args) -> None:
    print("== apply rate (events/s; target >= 200 000)")
    print("  (wall clock, and per CPU second of this process: the machine may be shared; load %s)"
          % " ".join(open("/proc/loadavg").read().split()[:3]))
    print("  median of %d run%s; maps %s" % (args.repeat, "" if args.repeat == 1 else "s",
                                               "copied per event" if args.copied_maps else "shared (as decoded)"))
    cpu_by_procs = {}
    for procs in (1000, 10000):
        for label, batch in (("apply", 0), ("apply_batch(%d)" % args.batch, args.batch)):
            runs = [apply_rate(procs, args.events, batch, not args.copied_maps) for _ in range(args.repeat)]
            wall = statistics.median(r[0] for r in runs)
            cpu = statistics.median(r[1] for r in runs)
            cpu_by_procs.setdefault(procs, cpu)
            print("  %6d processes, %-16s %9.0f events/s wall, %9.0f events/s per CPU second (%.2f us/event)" % (
                procs, label + ":", wall, cpu, 1e6 / cpu))
    print("  ratio 10k/1k (CPU, apply): %.2f" % (cpu_by_procs[10000] / cpu_by_procs[1000]))


def memory_growth(n_events: int, n_procs: int = 2000, batch: int = 100_000) -> tuple:
    world = World(n_procs)
    g = NamespaceGraph(dev=DEV)
    g.load_snapshot(world.snapshot)
    warm = world.events(batch)
    for e in warm:
        g.apply(e)
    del warm
    gc.collect()
    base = rss_mb()
    done = 0
    peak = base
    while done < n_events:
        events = world.events(min(batch, n_events - done))
        for e in events:
            g.apply(e)
        done += len(events)
        del events
        gc.collect()
        peak = max(peak, rss_mb())
    g.end_orphans()
    gc.collect()
    return rss_mb() - base, peak - base, g.counters_snapshot()


def serialise(n_procs: int, own: int) -> tuple:
    world = World(n_procs, own_ns_procs=own)
    g = NamespaceGraph(dev=DEV)
    g.load_snapshot(world.snapshot)
    n_ns = g.counters_snapshot()["namespaces_alive"]
    best_json = best_dump = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        data = g.to_json()
        t1 = time.perf_counter()
        json.dumps(data)
        t2 = time.perf_counter()
        best_json, best_dump = min(best_json, t1 - t), min(best_dump, t2 - t1)
    return n_ns, best_json, best_dump


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rate-only", action="store_true", help="only the event rate")
    ap.add_argument("--repeat", type=int, default=1, metavar="N", help="event-rate runs (median reported)")
    ap.add_argument("--events", type=int, default=200_000, metavar="N", help="events per rate run")
    ap.add_argument("--batch", type=int, default=256, metavar="N", help="events per apply_batch call")
    ap.add_argument("--copied-maps", action="store_true",
                    help="a dict per event instead of the Decoder's shared maps")
    args = ap.parse_args()
    n = 200_000 if args.quick else 1_000_000

    rates(args)
    if args.rate_only:
        return EXIT_OK

    print("== memory growth over %d events, default retention (target <= 100 MB)" % n)
    growth, peak, counters = memory_growth(n)
    print("  growth %.1f MB (peak %.1f MB); alive namespaces %d, ended kept %d, processes %d" % (
        growth, peak, counters["namespaces_alive"], counters["namespaces_ended_kept"], counters["processes"]))

    print("== serialisation: to_json + json.dumps (target <= 100 ms for 5 000 namespaces)")
    n_ns, tj, td = serialise(1000, 1000 - 2)
    print("  %5d namespaces, 1 000 processes: to_json %.1f ms + dumps %.1f ms = %.1f ms" % (
        n_ns, tj * 1e3, td * 1e3, (tj + td) * 1e3))
    results = {}
    for procs in (1000, 10000):
        n_ns, tj, td = serialise(procs, 200)
        results[procs] = tj + td
        print("  %5d processes (%d namespaces): to_json %.1f ms + dumps %.1f ms" % (procs, n_ns, tj * 1e3, td * 1e3))
    print("  ratio 10k/1k: %.2f" % (results[10000] / results[1000]))

    print("== memory of the model (tracemalloc): 1k vs 10k processes")
    import tracemalloc
    mems = {}
    for procs in (1000, 10000):
        world = World(procs, own_ns_procs=200)
        tracemalloc.start()
        g = NamespaceGraph(dev=DEV)
        g.load_snapshot(world.snapshot)
        mems[procs] = tracemalloc.get_traced_memory()[0] / 2**20
        tracemalloc.stop()
        print("  %5d processes: %.1f MB" % (procs, mems[procs]))
        del g, world
    print("  ratio 10k/1k: %.2f" % (mems[10000] / mems[1000]))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
