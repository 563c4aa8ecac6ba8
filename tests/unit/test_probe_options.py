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


def test_tp_btf_programs_are_named_back_after_their_tracepoints():
    """Kernel program names keep 15 characters: the alias each tp_btf program is loaded
    under maps back to one BCC-style name per tracepoint, and nothing else is renamed."""
    from tracer.kernel import bpfstats, tpbtf
    names = {tracepoint: tpbtf.kernel_name(tracepoint) for tracepoint in tpbtf.ALIASES}
    assert all(len(n) <= 15 for n in names.values()) and len(set(names.values())) == len(names)
    for tracepoint, name in names.items():
        assert tpbtf.full_name(name) == "tp_btf__" + tracepoint
        assert bpfstats.short_name(tpbtf.full_name(name)) == tracepoint
    assert tpbtf.full_name("sched_process_f") == "sched_process_f"


def test_floor_attaches_tp_btf_hooks_as_plain_functions():
    import importlib.util
    import os
    path = os.path.join(os.path.dirname(__file__), "..", "..", "bench", "floor.py")
    spec = importlib.util.spec_from_file_location("floor", path)
    floor = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(floor)
    text = floor.floor_source(["tp_btf__sched_process_fork", "raw_tracepoint__sched_process_fork"])
    assert "int %s(void *ctx)" % floor.btf_func(0) in text
    assert "RAW_TRACEPOINT_PROBE(sched_process_fork)" in text
