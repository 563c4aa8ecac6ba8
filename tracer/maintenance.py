"""The service's maintenance thread: repairs, reconciles, settling, zombies, join sessions.

It used to wake four times a second whatever happened, and on an idle host those
wake-ups (each taking the graph lock, walking the namespace table, reading /proc
for zombies) were most of `nsgraph serve`'s CPU.  Now it runs a tick when something
may need one and otherwise sleeps until the next thing falls due (`Pacer`):

* every ACTIVE_S (0.25 s, as before) while the graph changes, a join session is
  open or closed recently without its command, or exits wait for their zombie check;
* a graph change or lost events wake it at once (the service sets `wake`);
* zombies the model holds: their reaping makes no event, so they are checked every
  ZOMBIE_IDLE_S while nothing else happens (was 0.25 s);
* settling (namespaces with no member, or held only by pins or fds, whose end makes
  no event): settle_s after the candidates last changed, then twice as long after
  each settle that ended nothing, up to reconcile_s (was: every settle_s for as long
  as any such namespace lived, forever for a namespace someone keeps pinned);
* the full reconcile: every reconcile_s, as before.

What this trades: a namespace that lived for a while with no member and then ends
(a pin removed in another mount namespace, an fd closed) is seen as ended up to
reconcile_s later instead of settle_s (or the paced settle interval) later; a
zombie reaped while nothing else happens leaves the model up to ZOMBIE_IDLE_S later.
"""

from __future__ import annotations

import logging
import time

from .zombie_watch import ZombieWatch

log = logging.getLogger(__name__)

ACTIVE_S = 0.25             # between ticks while something is going on
ZOMBIE_IDLE_S = 1.0         # model zombies re-read this often on a quiet host
SETTLE_CPU_SHARE = 10       # settling may use at most 1/10 of a CPU (paced by its snapshot's CPU time)


class Pacer:
    """When the next tick is due, from what the last tick saw (pure: unit-tested)."""

    def __init__(self, settle_s: float, reconcile_s: float, clock=time.monotonic):
        self.settle_s = settle_s
        self.reconcile_s = reconcile_s
        self.clock = clock
        now = clock()
        self.last_reconcile = self.last_settle = now
        self.settle_backoff = 0         # settles in a row that ended nothing, candidates unchanged
        self.candidates = (0, 0)        # (orphans, pinned-only) when the backoff last started over
        self.busy = True                # the last tick saw something going on: tick again soon

    def reconciled(self) -> None:
        self.last_reconcile = self.last_settle = self.clock()
        self.settle_backoff = 0

    def settle_interval(self, settle_cpu: float) -> float:
        base = max(self.settle_s, SETTLE_CPU_SHARE * settle_cpu)
        return min(max(self.reconcile_s, base), base * (2 ** min(self.settle_backoff, 16)))

    def settle_due(self, candidates: tuple, settle_cpu: float) -> bool:
        """candidates: (orphans, pinned-only) now.  A change starts the pacing over."""
        if candidates != self.candidates:
            self.candidates = candidates
            self.settle_backoff = 0
        if not any(candidates):
            return False
        return self.clock() - self.last_settle >= self.settle_interval(settle_cpu)

    def settled(self, candidates_after: tuple) -> None:
        """After a settle: nothing ended (same candidates) makes the next one wait twice as long."""
        self.last_settle = self.clock()
        if candidates_after == self.candidates:
            self.settle_backoff += 1
        else:
            self.candidates = candidates_after
            self.settle_backoff = 0

    def wait_s(self, zombies: bool, settle_cpu: float) -> float:
        """Seconds until the next tick unless woken (after the ACTIVE_S gap every tick is
        followed by): none while busy, else until the next thing falls due."""
        if self.busy:
            return 0.0
        due = [self.last_reconcile + self.reconcile_s]
        if any(self.candidates):
            due.append(self.last_settle + self.settle_interval(settle_cpu))
        wait = min(due) - self.clock()
        if zombies:
            wait = min(wait, ZOMBIE_IDLE_S - ACTIVE_S)
        return max(0.0, wait)


class Maintenance:
    """One service's maintenance: `tick()` (tests call it directly) and `run()`, its thread's body."""

    def __init__(self, service, stop, wake, health):
        self.service = service
        self.stop = stop                # threading.Event: the service is stopping
        self.wake = wake                # threading.Event: run a tick now (graph changed, events lost)
        self.health = health
        self.zombies = ZombieWatch()
        config = service.config
        self.pacer = Pacer(config.settle_s, config.reconcile_s)
        self.ticks = 0
        self._seen_version = None

    def started(self) -> None:
        """The service's start-up reconcile just ran."""
        self.pacer.reconciled()

    def run(self) -> None:
        while not self.stop.is_set():
            self.wake.wait(self.pacer.wait_s(bool(self.zombies.held), self._settle_cpu()))
            self.wake.clear()
            if self.stop.is_set():
                return
            try:
                self.tick()
            except Exception as exc:
                if self.health.reconcile_error is None:
                    log.exception("maintenance failed")      # once per outage, not every tick
                self.health.maintenance_failed(exc)
                self.stop.wait(1.0)
            else:
                self.health.maintenance_ok()
            # At most one tick per ACTIVE_S, however often the graph changes.
            self.stop.wait(ACTIVE_S)

    def _settle_cpu(self) -> float:
        timings = self.service.timings
        return timings.get("last_settle_cpu", timings.get("last_snapshot_cpu", 0.0))

    def tick(self) -> None:
        """A reconcile when the graph needs repair or the interval passed, else settling
        orphans when due; zombies; closing quiet join sessions; docker exec commands."""
        service, pacer = self.service, self.pacer
        graph = service.graph
        self.ticks += 1
        version = graph.version
        if graph.needs_repair or pacer.clock() - pacer.last_reconcile >= pacer.reconcile_s:
            service.reconcile()
            pacer.reconciled()
        else:
            candidates = (graph.orphans, graph.pinned_only())
            if pacer.settle_due(candidates, self._settle_cpu()):
                service.settle()
                pacer.settled((graph.orphans, graph.pinned_only()))
        wall = time.time()
        service.watch_zombies(wall)
        hints = service.hints
        with graph.lock:
            joins = graph.joins
            due = joins.flush_due(wall)
            pending = [(s.id, s.container, s.start, s.end) for s in joins.pending_hints(wall)] \
                if hints is not None else []
            busy = joins.active or bool(pending) or bool(self.zombies.exits_pending)
        ops = []
        if due:
            ops.append({"op": "joins_flush", "now": wall})
        for ident, container, start, end in pending:
            command = hints.lookup(container, start, end)
            if command:
                ops.append({"op": "join_command", "id": ident, "command": command, "source": "docker"})
        if ops:
            graph.apply_ops(ops)
        # Busy while the graph changes: exits of this tick are checked for zombies at the next.
        pacer.busy = busy or version != self._seen_version
        self._seen_version = version
