"""What the probes cost, as the kernel counts it, and which hooks they use.

Ground truth: the kernel's own run counters (a known number of unshare calls must
show up as exactly that many more runs), the sysctl the statistics must leave
alone, and for the hook path, whether BCC can load an fentry program here.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys

import pytest

from tracer import nstypes
from tracer.kernel import abi, bpfstats, trampolines
from tracer.kernel.probes import ProbeOptions, Probes

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NSGRAPH = [sys.executable, "-m", "tracer.cli"]
libc = ctypes.CDLL(None, use_errno=True)


def unshare_in_children(count: int) -> None:
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = 0 if libc.unshare(nstypes.CLONE_NEWUTS) == 0 else 1
            finally:
                os._exit(code)
        assert os.waitpid(pid, 0)[1] == 0


@pytest.fixture(scope="module")
def probes(root):
    """Probes of this test's own, and the ids of their programs (the session may hold others)."""
    before = set(bpfstats.prog_ids_of(os.getpid()))
    p = Probes(lambda record: None, options=ProbeOptions(proc_events=False))
    p.load()
    p.test_prog_ids = sorted(set(bpfstats.prog_ids_of(os.getpid())) - before)
    yield p
    p.close()


def unshare_entry_program(ids):
    names = {i: s.name for i, s in bpfstats.sample_all(ids).items()}
    wanted = [i for i, n in names.items() if n.endswith("sys_enter_unshare") or n.endswith("kfunc__ksys_unshare")]
    assert len(wanted) == 1, names
    return wanted[0]


def test_kernel_counts_every_run_and_restores_nothing_it_did_not_set(probes):
    with open(bpfstats.STATS_SYSCTL) as f:
        sysctl_before = f.read()
    prog = unshare_entry_program(probes.test_prog_ids)
    with bpfstats.enabled():
        before = bpfstats.sample(prog)
        unshare_in_children(29)
        after = bpfstats.sample(prog)
    with open(bpfstats.STATS_SYSCTL) as f:
        assert f.read() == sysctl_before
    # Other processes on the machine may unshare too: at least ours, and time with them.
    assert after.run_cnt - before.run_cnt >= 29
    assert after.run_time_ns > before.run_time_ns
    # Outside the window the kernel stops counting (no other holder assumed: >= is enough).
    quiet = bpfstats.sample(prog)
    assert quiet.run_cnt >= after.run_cnt


def test_counters_map_is_read_from_outside(probes):
    map_ids = sorted({m for s in bpfstats.sample_all(probes.test_prog_ids).values() for m in s.map_ids})
    before = bpfstats.percpu_array_sums(map_ids, "counters")
    unshare_in_children(7)
    after = bpfstats.percpu_array_sums(map_ids, "counters")
    # Nothing drains this ring: once other processes' namespace calls have filled it,
    # records count as dropped (ringbuf_full) instead of handed over.
    handled = [c[abi.CNT_EVENTS] + c[abi.CNT_RINGBUF_FULL] for c in (before, after)]
    assert handled[1] - handled[0] >= 7
    assert after[abi.CNT_EVENTS] == probes.counters()["submitted"]


def test_hook_path_follows_what_the_kernel_accepts(probes):
    """The start-up probe's verdict equals BCC's own attempt to load an fentry program,
    and the loaded probes use the path the verdict allows."""
    from bcc import BPF
    verdict = trampolines.probe(probes.layout.btf)
    try:
        BPF(text=b"KFUNC_PROBE(ksys_unshare) { return 0; }").cleanup()
        fentry_loads = True
    except Exception:
        fentry_loads = False
    assert verdict.usable == fentry_loads, verdict.reason
    assert probes.hook_path == ("fentry" if verdict.usable else "tracepoint")
    if not verdict.usable:
        assert "refused" in probes.hook_reason or "lacks" in probes.hook_reason
        assert all(err for _fn, _label, err in verdict.tried[-1:])


def test_doctor_cost_measures_a_running_tracer(root):
    trace = subprocess.Popen(NSGRAPH + ["trace", "--json"], cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert trace.stderr.readline().startswith("Tracing namespace events")
        doctor = subprocess.Popen(NSGRAPH + ["doctor", "--cost", "--seconds", "5", "--json"], cwd=REPO,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # The window opens right after this line (slow under the kernel matrix's emulation).
        assert doctor.stderr.readline().startswith("measuring")
        unshare_in_children(11)
        out, err = doctor.communicate(timeout=60)
    finally:
        trace.send_signal(2)
        trace.communicate(timeout=30)
    assert doctor.returncode == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    mine = [r for r in rows if r["pid"] == trace.pid]
    assert mine, rows
    entry = [r for r in mine if r["program"] in ("sys_enter_unshare", "fentry ksys_unshare")]
    assert len(entry) == 1 and entry[0]["runs"] >= 11 and entry[0]["ns_per_run"] > 0
    total = next(r for r in mine if r["program"] == "total")
    assert total["records"] >= 11 and total["ns_per_record"] > 0 and total["lost"] == 0
    assert mine[0]["command"] == "nsgraph trace"


def test_serve_probes_hold_one_program_per_hook(root):
    """With process events on (serve's set), each hook carries exactly one program of ours.

    A load attempt that fails part-way (the task-storage path refused, say) must not leave
    its first programs attached beside the fallback's: that doubles their cost."""
    before = set(bpfstats.prog_ids_of(os.getpid()))
    p = Probes(lambda record: None, options=ProbeOptions(proc_events=True))
    p.load()
    try:
        ours = sorted(set(bpfstats.prog_ids_of(os.getpid())) - before)
        names = [s.name for s in bpfstats.sample_all(ours).values()]
    finally:
        p.close()
    assert len(names) == len(set(names)), sorted(names)
    assert any(n.endswith("sched_process_exec") for n in names), names
    assert set(bpfstats.prog_ids_of(os.getpid())) - before == set()


def test_a_failed_attach_detaches_what_it_had_attached(root):
    from bcc import BPF

    from tracer.kernel.probes import _detaching_on_failure

    text = (b"RAW_TRACEPOINT_PROBE(sched_process_fork) { return 0; }\n"
            b"RAW_TRACEPOINT_PROBE(nsgraph_no_such_tracepoint) { return 0; }\n")
    before = set(bpfstats.prog_ids_of(os.getpid()))
    with pytest.raises(Exception):
        _detaching_on_failure(BPF)(text=text)
    assert set(bpfstats.prog_ids_of(os.getpid())) - before == set()


def test_probes_load_on_the_fast_path_this_kernel_has(probes):
    """A verifier refusal falls back to slower code without failing: the fast path must be what loaded."""
    from tracer.kernel.layout import kernel_has_task_storage, kernel_version
    assert probes.task_storage == kernel_has_task_storage(), probes.fallback_reason
    assert probes.call_table == ("array" if kernel_version() >= (5, 12) else "hash"), probes.fallback_reason
    # tp_btf (5.5+) is tried with the BTF-typed build (5.11+); it needs no trampolines.
    assert probes.fork_hook == ("tp_btf" if kernel_has_task_storage() else "raw_tracepoint"), probes.fallback_reason
    names = [s.name for s in bpfstats.sample_all(probes.test_prog_ids).values()]
    fork = [n for n in names if n.endswith("sched_process_fork")]
    assert fork == ["tp_btf__sched_process_fork" if probes.fork_hook == "tp_btf"
                    else "raw_tracepoint__sched_process_fork"], names


def test_a_small_call_table_is_freed_after_every_call(root):
    """Every entry leaves its slot to the next call: 40 unshares in a row through a table of 16
    slots (each slot used twice or more; other processes' namespace calls go through it too)
    come out with the inode the child itself sees afterwards (/proc/self/ns/uts)."""
    records = []
    p = Probes(lambda record: records.append(bytes(record)),
               options=ProbeOptions(proc_events=False, pending_entries=16))
    p.load()
    truth = {}
    try:
        for _ in range(40):
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    if libc.unshare(nstypes.CLONE_NEWUTS) == 0:
                        os.write(write_end, str(os.stat("/proc/self/ns/uts").st_ino).encode())
                        code = 0
                finally:
                    os._exit(code)
            os.close(write_end)
            truth[pid] = int(os.read(read_end, 64))
            os.close(read_end)
            assert os.waitpid(pid, 0)[1] == 0
        for _ in range(10):
            p.poll(50)
        pending_full = p.counters()["pending_full"]
    finally:
        p.close()
    seen = {}
    for r in records:
        pid = abi.EVENT.unpack_from(r)[7]
        if pid in truth and r[3] == abi.KIND_UNSHARE and r[5] == 1:
            seen[pid] = abi.CHANGE.unpack_from(r, abi.EVENT_SIZE)[3]
    # Another process's call in flight on the same slot at that moment: counted, never wrong.
    # A slot never freed would take every later call landing on it (and soon the table).
    assert len(seen) + pending_full >= 40 and len(seen) >= 36, (len(seen), pending_full)
    assert all(seen[pid] == truth[pid] for pid in seen)
