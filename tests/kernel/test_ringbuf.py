"""The memory-mapped ring buffer reader against BCC's own reader, on the real kernel."""

from __future__ import annotations

import ctypes
import os
import time

from tracer import nstypes
from tracer.events.decode import Decoder
from tracer.kernel import abi
from tracer.kernel.probes import ProbeOptions, Probes


libc = ctypes.CDLL(None, use_errno=True)


def unshare_children(count, pause=0.0):
    pids = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            os._exit(0 if libc.unshare(nstypes.CLONE_NEWUTS) == 0 else 1)
        pids.append(pid)
        assert os.waitpid(pid, 0)[1] == 0
        if pause:
            time.sleep(pause)
    return pids


def unshare_in_one_child(count):
    """One child that makes `count` uts namespaces back to back: as many events as
    unshare_children(count), without a fork per event (forks are slow under qemu's
    emulation, where the kernel matrix runs these tests).  Returns the child's pid."""
    pid = os.fork()
    if pid == 0:
        for _ in range(count):
            if libc.unshare(nstypes.CLONE_NEWUTS) != 0:
                os._exit(1)
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    return pid


def collect(probes_list, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        for p in probes_list:
            p.poll(5)


def test_mapped_reader_sees_what_bcc_sees(root):
    got = {"mapped": [], "bcc": []}
    decoders = {name: Decoder(node="t", clock_offset=0.0) for name in got}

    def sink(name):
        return lambda record: got[name].append(decoders[name].decode(record))

    probes = [Probes(sink(name), options=ProbeOptions(proc_events=False, reader=name)) for name in got]
    for p in probes:
        p.load()
    try:
        assert probes[0]._mapped is not None and probes[1]._mapped is None
        pids = set(unshare_children(37))
        # A poll of the mapped reader hands over POLL_RECORDS at most: on a busy host other
        # processes' records may queue ahead of ours, so poll until ours came (bounded).
        deadline = time.monotonic() + 60
        collect(probes, 1.0)
        while time.monotonic() < deadline and any(
                len({e.pid for e in got[name] if e is not None} & pids) < 37 for name in got):
            collect(probes, 0.5)
    finally:
        for p in probes:
            p.close()
    views = {}
    for name, events in got.items():
        mine = [e for e in events if e is not None and e.pid in pids]
        views[name] = sorted((e.pid, e.kind, tuple(sorted(e.ns.items())), tuple(sorted(e.ns_before.items())))
                             for e in mine)
        assert decoders[name].rejected == 0
    assert len(views["mapped"]) == 37
    assert views["mapped"] == views["bcc"]


def test_records_that_wrap_around_a_one_page_buffer(root):
    """A 4 KiB ring holds a few dozen records: 60 of ours wrap it many times; each must decode.

    On a shared machine other processes' namespace calls fill so small a ring too, so a
    record of ours may not fit: then the kernel must have counted it lost, and we go on
    (bounded) until 60 of ours came through."""
    decoder = Decoder(node="t", clock_offset=0.0)
    events = []
    probes = Probes(lambda r: events.append(decoder.decode(r)),
                    options=ProbeOptions(proc_events=False, ringbuf_pages=1, reader="mapped", wakeup_events=1))
    probes.load()
    pids = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(pids) < 600:
            lost_before = probes.counters()["ringbuf_full"]
            pid = unshare_children(1)[0]
            probes.poll(20)
            collect([probes], 0.01)
            if not any(e is not None and e.pid == pid for e in events):
                # Not delivered: only acceptable when the kernel counted a full ring meanwhile.
                assert probes.counters()["ringbuf_full"] > lost_before, "record of %d missing, not counted" % pid
                continue
            pids.append(pid)
            if len(pids) == 60:
                break
        collect([probes], 0.3)
        lost = probes.counters()["ringbuf_full"]
    finally:
        probes.close()
    assert len(pids) == 60, "only %d of our records came through a 4 KiB ring in 60 s" % len(pids)
    mine = [e for e in events if e is not None and e.pid in set(pids)]
    assert decoder.rejected == 0
    # Other processes' namespace events share the 9 slots on a busy host: a record of
    # ours may not fit, but then the kernel counted it, and most still wrap through.
    missing = sorted(set(pids) - {e.pid for e in mine})
    assert len(missing) <= lost, "records missing without a counted loss: %s" % missing
    assert len(mine) >= 30, "only %d of 60 records came through (%d lost)" % (len(mine), lost)
    assert len(mine) == len({e.pid for e in mine})
    # Each record is 128 bytes plus the ring's 8-byte header: ours alone (60 x 136 = 8160
    # bytes) pass through a 4096-byte ring almost twice, so the writes did wrap around.
    assert sum(1 for e in events if e is not None) * (abi.EVENT_SIZE + abi.CHANGE_SIZE + 8) > 4096
    for e in mine:
        assert e.kind == "unshare" and e.changed_types() == ["uts"]


def test_a_sleeping_reader_is_woken_by_the_next_record(root):
    """After ringbuf.EMPTY_POLLS_BEFORE_SLEEP empty polls the reader waits up to idle_ms (an
    idle machine's reader does not wake 50 times a second); the probes' next record must wake
    it at once, not when idle_ms ends.  On a busy machine other records wake it too: the test
    can only fail where the ring goes quiet (CI's machine), which is where it matters."""
    import threading
    seen = {}
    decoder = Decoder(node="t", clock_offset=0.0)

    def sink(record):
        event = decoder.decode(record)
        if event is not None and event.kind == "unshare":
            seen.setdefault(event.pid, time.monotonic())

    made = {}

    def later():
        time.sleep(1.0)     # the reader has slept since ~25 empty 5 ms polls after the load
        made["at"] = time.monotonic()
        made["pids"] = unshare_children(1)

    idle_ms = 20_000
    p = Probes(sink, options=ProbeOptions(proc_events=False, reader="mapped"))
    p.load()
    thread = threading.Thread(target=later)
    try:
        thread.start()
        deadline = time.monotonic() + 3 * idle_ms / 1000
        while time.monotonic() < deadline and not (made.get("pids") and made["pids"][0] in seen):
            p.poll(5, idle_ms=idle_ms)
        thread.join()
    finally:
        p.close()
    pid = made["pids"][0]
    assert pid in seen, "the unshare was never read"
    assert seen[pid] - made["at"] < 5.0, "read %.1f s after it happened: the sleeping reader was not woken" % (
        seen[pid] - made["at"])
