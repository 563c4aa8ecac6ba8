"""Build-time choices of the probes that are pure arithmetic: wake-up spacing, call-table size."""

from __future__ import annotations

from tracer.kernel.probes import LARGEST_RECORD, MAX_WAKEUP_EVENTS, pending_entries, wakeup_events_for


def test_wakeups_leave_three_quarters_of_the_ring_free():
    for ring in (4096, 65536, 8 << 20, 64 << 20):
        for cpus in (1, 2, 8, 64, 512):
            n = wakeup_events_for(ring, cpus)
            assert 1 <= n <= MAX_WAKEUP_EVENTS
            # Every CPU at its largest records, none of them having woken the reader yet.
            assert n == 1 or n * cpus * LARGEST_RECORD <= ring // 4


def test_default_ring_wakes_rarely_on_a_small_machine():
    # 8 MiB, 2 CPUs: a wake-up per 2 048 records per CPU (a wake-up costs tens of us on a VM).
    assert wakeup_events_for(8 << 20, 2) == 2048
    assert wakeup_events_for(4096, 2) == 1


def test_call_table_size_is_a_power_of_two_at_least_as_asked():
    for wanted, size in ((0, 1), (1, 1), (3, 4), (16384, 16384), (16385, 32768)):
        assert pending_entries(wanted) == size
