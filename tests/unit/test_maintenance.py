"""The maintenance thread's pacing (tracer/maintenance.py): busy ticks as before, a quiet
graph left alone until something falls due, settling that backs off while it ends nothing."""

from __future__ import annotations

import threading
import time

from synthetic import HOST, ev, fresh_graph, with_

from tracer.maintenance import ACTIVE_S, ZOMBIE_IDLE_S, Pacer
from tracer.service import NsgraphService, ServiceConfig


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_a_quiet_graph_sleeps_until_the_reconcile_and_a_busy_one_ticks_at_once():
    clock = Clock()
    pacer = Pacer(settle_s=1.0, reconcile_s=30.0, clock=clock)
    assert pacer.wait_s(zombies=False, settle_cpu=0.0) == 0.0         # busy until a tick says otherwise
    pacer.busy = False
    clock.now += 10
    assert pacer.wait_s(zombies=False, settle_cpu=0.0) == 20.0
    assert pacer.wait_s(zombies=True, settle_cpu=0.0) == ZOMBIE_IDLE_S - ACTIVE_S
    clock.now += 25
    assert pacer.wait_s(zombies=False, settle_cpu=0.0) == 0.0         # overdue: no negative sleep


def test_settling_backs_off_while_it_ends_nothing_and_starts_over_when_the_candidates_change():
    clock = Clock()
    pacer = Pacer(settle_s=1.0, reconcile_s=30.0, clock=clock)
    assert not pacer.settle_due((0, 0), settle_cpu=0.0)               # nothing to settle
    waits = []
    for _ in range(8):
        # the same pinned namespace, still there after every settle
        start = clock.now
        while not pacer.settle_due((0, 1), settle_cpu=0.0):
            clock.now += 0.25
        waits.append(clock.now - start)
        pacer.settled((0, 1))
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]     # every settle_s before
    # A new orphan: due again after settle_s, not after the backed-off interval.
    clock.now += 0.5
    assert not pacer.settle_due((1, 1), settle_cpu=0.0)
    clock.now += 0.5
    assert pacer.settle_due((1, 1), settle_cpu=0.0)
    pacer.settled((0, 1))                                              # it ended: start over
    assert pacer.settle_backoff == 0
    # A snapshot that costs CPU paces settling to a tenth of a CPU, as before.
    clock.now += 1.0
    assert not pacer.settle_due((0, 1), settle_cpu=0.2)
    clock.now += 1.0
    assert pacer.settle_due((0, 1), settle_cpu=0.2)


def test_the_thread_sleeps_on_a_quiet_graph_and_a_change_wakes_it():
    svc = NsgraphService(ServiceConfig(db="none", docker=False, reconcile_s=3600))
    g = fresh_graph(pids=(1, 50))
    svc.use_graph(g)
    maintenance = svc.maintenance
    svc.reconcile = lambda since_version=None, full=True: 0
    thread = threading.Thread(target=maintenance.run, daemon=True)
    thread.start()
    try:
        time.sleep(1.5)
        quiet = maintenance.ticks
        time.sleep(1.5)
        assert maintenance.ticks == quiet           # 4 a second before
        g.apply(ev("clone", 50, ns=HOST, before=HOST, child_pid=51, raw_flags=17))
        deadline = time.monotonic() + 5
        while maintenance.ticks == quiet and time.monotonic() < deadline:
            time.sleep(0.01)
        assert maintenance.ticks > quiet
    finally:
        svc.stop()
        thread.join(5)
    assert not thread.is_alive()
