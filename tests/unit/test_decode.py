"""Decoding recorded probe records (no root needed), and malformed input."""

from __future__ import annotations

import json
import os
import struct

import pytest
from hypothesis import given, settings, strategies as st

from tracer import nstypes
from tracer.events import flags
from tracer.events.decode import Decoder
from tracer.events.event import Event
from tracer.kernel import abi

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "recorded_events.json")


def load_recording():
    with open(DATA) as f:
        recording = json.load(f)
    return recording["truth"], [bytes.fromhex(h) for h in recording["records"]]


def decode_all(records):
    decoder = Decoder(node="test", clock_offset=0.0)
    events = [decoder.decode(r) for r in records]
    assert decoder.rejected == 0
    return events


def changed(before: dict, after: dict):
    """The ground truth of what a call changed: (before, after) of the slots that differ."""
    slots = [s for s in after if before.get(s) != after[s]]
    return {s: before[s] for s in slots if s in before}, {s: after[s] for s in slots}


def test_recorded_unshares_decode_to_the_ground_truth():
    """Records name exactly the slots a call changed, with /proc's inodes before and after."""
    truth, records = load_recording()
    events = decode_all(records)
    main_pid = truth[0]["pid"]
    unshares = [e for e in events if e.kind == "unshare" and e.pid == main_pid]
    expected = [t for t in truth if t["op"] == "unshare"]
    assert len(unshares) == len(expected) >= 2
    for event, t in zip(unshares, expected):
        before, after = changed(t["before"], t["after"])
        assert after, "the workload's unshares all change something"
        assert event.ns == after
        assert event.ns_before == before
        assert event.raw_flags == t["flags"]
        assert event.errno is None


def test_recorded_clone_setns_and_eperm():
    truth, records = load_recording()
    events = decode_all(records)
    clone = next(t for t in truth if t["op"] == "clone")
    event = next(e for e in events if e.kind == "clone" and e.child_pid == clone["child_pid"])
    before, after = changed(clone["parent_ns"], clone["child_ns"])
    assert event.ns == after and event.ns_before == before
    assert event.syscall == "clone" and event.child_vpid == 1
    assert {"CLONE_NEWPID", "CLONE_NEWUTS", "CLONE_NEWNS"} <= set(event.flags)
    clone3 = next(t for t in truth if t["op"] == "clone3")
    event = next(e for e in events if e.kind == "clone" and e.child_pid == clone3["child_pid"])
    assert event.syscall == "clone3" and event.flags == ["CLONE_NEWNET"]
    setns = next(t for t in truth if t["op"] == "setns")
    event = next(e for e in events if e.kind == "setns" and e.pid == setns["pid"])
    assert event.ns["net"] == setns["target_net"] and event.fd == setns["fd"]
    assert event.flags == ["CLONE_NEWNET"]
    eperm = next(t for t in truth if t["op"] == "unshare_eperm")
    event = next(e for e in events if e.pid == eperm["pid"] and e.kind == "unshare")
    assert event.errno == 1 and event.uid == 65534
    assert event.to_json()["errno_name"] == "EPERM"


def test_json_has_the_documented_keys_and_round_trips():
    _truth, records = load_recording()
    for event in decode_all(records):
        obj = event.to_json()
        for key in ("kind", "ts", "seq", "node", "pid", "tid", "ppid", "uid", "comm", "vpid", "flags",
                    "ret", "errno", "ns", "ns_id"):
            assert key in obj
        assert obj["ts"].endswith("Z")
        if event.kind == "clone":
            assert "child_pid" in obj
        if event.kind in ("unshare", "setns", "clone"):
            assert obj["ns_before"] is not None
        again = Event.from_json(json.loads(json.dumps(obj)))
        assert again.to_json() == obj


def test_seq_increases():
    _truth, records = load_recording()
    seqs = [e.seq for e in decode_all(records)]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def _valid_record():
    """A full record (a brief one is shorter than a full record's header)."""
    _truth, records = load_recording()
    return next(r for r in records if len(r) >= abi.EVENT_SIZE)


def _brief_record():
    _truth, records = load_recording()
    return next(r for r in records if len(r) == abi.BRIEF_SIZE)


def test_truncated_records_are_counted_not_raised():
    record = _valid_record()
    decoder = Decoder(node="t", clock_offset=0.0)
    for cut in (0, 1, 8, abi.EVENT_SIZE - 1):
        assert decoder.decode(record[:cut]) is None
    assert decoder.errors["truncated"] == 4
    assert decoder.seq == 0


def test_wrong_size_version_kind_and_syscall_are_counted():
    record = bytearray(_valid_record())
    decoder = Decoder(node="t", clock_offset=0.0)
    bad_size = bytearray(record)
    struct.pack_into("<H", bad_size, 0, abi.EVENT_SIZE + 8)
    bad_version = bytearray(record)
    bad_version[2] = 99
    bad_kind = bytearray(record)
    bad_kind[3] = 200
    bad_syscall = bytearray(record)
    bad_syscall[4] = 77
    for raw in (bad_size, bad_version, bad_kind, bad_syscall):
        assert decoder.decode(bytes(raw)) is None
    assert dict(decoder.errors) == {"size_mismatch": 1, "version_mismatch": 1,
                                    "unknown_kind": 1, "unknown_syscall": 1}
    # A longer buffer with a valid record at its start still decodes (perf buffers pad).
    assert decoder.decode(bytes(record) + b"\0" * 8) is not None


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=abi.EVENT_SIZE + 16))
def test_random_bytes_never_raise(data):
    decoder = Decoder(node="t", clock_offset=0.0)
    event = decoder.decode(data)
    if event is None:
        assert decoder.rejected == 1
    else:
        event.to_json()  # whatever decoded must also format


def test_brief_fork_and_exit_records():
    """A plain fork and an exit come as bare headers: no namespaces, no uid/ppid."""
    _truth, records = load_recording()
    events = decode_all(records)
    briefs = [e for e in events if e.brief]
    assert {e.kind for e in briefs} == {"clone", "exit"}
    for event in briefs:
        assert dict(event.ns) == {} and event.uid is None and event.ppid is None
        assert event.to_json()["brief"] is True
    forks = [e for e in briefs if e.kind == "clone"]
    assert forks and all(e.child_pid and e.syscall is None and dict(e.ns_before) == {} for e in forks)


def test_brief_records_are_half_a_full_header_and_checked_like_one():
    """A brief record takes less than a cache line of the ring with its 8-byte header; a cut,
    resized, re-versioned or re-kinded one is counted, and a perf buffer's padding is fine."""
    assert abi.BRIEF_SIZE + 8 <= 64 and abi.BRIEF_SIZE < abi.EVENT_SIZE
    record = _brief_record()
    decoder = Decoder(node="t", clock_offset=0.0)
    for cut in (abi.BRIEF_SIZE - 1, 20):
        assert decoder.decode(record[:cut]) is None
    bad_size = bytearray(record + b"\0" * 8)
    struct.pack_into("<H", bad_size, 0, abi.BRIEF_SIZE - 8)
    bad_version = bytearray(record)
    bad_version[2] = 99
    bad_kind = bytearray(record)
    bad_kind[3] = abi.KIND_SETNS
    long_size = bytearray(record)
    struct.pack_into("<H", long_size, 0, abi.BRIEF_SIZE + 8)
    for raw in (bad_size, bad_version, bad_kind, long_size):
        assert decoder.decode(bytes(raw)) is None
    assert dict(decoder.errors) == {"truncated": 3, "size_mismatch": 1, "version_mismatch": 1,
                                    "unknown_kind": 1}
    assert decoder.decode(record + b"\0" * 4) is not None


def test_brief_fork_with_clone_parent():
    """CLONE_PARENT travels as an info bit of a brief fork and comes out as the clone flag."""
    record = bytearray(next(r for r in load_recording()[1] if len(r) == abi.BRIEF_SIZE and r[3] == abi.KIND_CLONE))
    plain = Decoder(node="t", clock_offset=0.0).decode(bytes(record))
    assert plain.raw_flags == 0 and plain.child_pid and plain.exit_code is None
    info = struct.unpack_from("<H", record, 6)[0]
    struct.pack_into("<H", record, 6, info | abi.INFO_CLONE_PARENT)
    event = Decoder(node="t", clock_offset=0.0).decode(bytes(record))
    assert event.flags == ["CLONE_PARENT"] and event.brief and event.child_pid == plain.child_pid


def test_change_with_a_bad_slot_is_counted():
    _truth, records = load_recording()
    record = bytearray(next(r for r in records if r[5] > 0))   # nchanges > 0
    struct.pack_into("<B", record, abi.EVENT_SIZE + 24, abi.NS_COUNT)  # slot out of range
    decoder = Decoder(node="t", clock_offset=0.0)
    assert decoder.decode(bytes(record)) is None
    assert dict(decoder.errors) == {"bad_change": 1}


def test_memoryview_input():
    decoder = Decoder(node="t", clock_offset=0.0)
    assert decoder.decode(memoryview(_valid_record())) is not None


def test_flag_names():
    assert flags.decode_unshare_flags(nstypes.CLONE_NEWNET | nstypes.CLONE_NEWIPC) == ["CLONE_NEWIPC", "CLONE_NEWNET"]
    assert flags.decode_unshare_flags(0) == []
    assert flags.decode_unshare_flags(nstypes.CLONE_NEWTIME) == ["CLONE_NEWTIME"]
    # clone(): the low byte is the exit signal (SIGCHLD = 17), not flags.
    assert flags.decode_clone_flags(nstypes.CLONE_NEWPID | 17, "clone") == ["CLONE_NEWPID"]
    assert flags.decode_clone_flags(nstypes.CLONE_NEWTIME, "clone3") == ["CLONE_NEWTIME"]
    assert flags.decode_clone_flags(0x1000000000, "clone3") == ["0x1000000000"]
    assert flags.decode_setns_nstype(0) == []
    assert flags.decode_setns_nstype(nstypes.CLONE_NEWNS) == ["CLONE_NEWNS"]
    assert flags.decode_setns_nstype(0x08000000) == ["CLONE_NEWIPC"]
    assert nstypes.flag_types(nstypes.CLONE_NEWNET | nstypes.CLONE_NEWPID | nstypes.CLONE_NEWNS) == ["mnt", "pid", "net"]


def test_runc_setns_sequence_names():
    """The five nstypes runc:[1:CHILD] passes during `docker exec` (GUIDE.md)."""
    names = [flags.decode_setns_nstype(n) for n in (0x08000000, 0x04000000, 0x40000000, 0x20000000, 0x00020000)]
    assert names == [["CLONE_NEWIPC"], ["CLONE_NEWUTS"], ["CLONE_NEWNET"], ["CLONE_NEWPID"], ["CLONE_NEWNS"]]


def test_argv_decoding():
    from tracer.events.decode import _argv
    assert _argv(b"ps\0aux\0" + b"\0" * 120, 7) == ["ps", "aux"]
    assert _argv(b"a" * 128, 300) == ["a" * 128 + "..."]
    assert _argv(b"\0" * 128, 0) == []
    assert _argv(b"sh\0-c\0\xff\0", 8) == ["sh", "-c", "\ufffd"]


def test_event_time_follows_a_suspend_or_a_clock_step(monkeypatch):
    """Records carry CLOCK_MONOTONIC, which stops during suspend: a decoder that chose its own
    offset takes up a jump of the wall-clock offset (> 1 ms), ignores read jitter, and a
    decoder given an offset keeps it."""
    from tracer.events import decode as decode_module
    record = _valid_record()
    ts = abi.EVENT.unpack_from(record)[6] / 1e9
    offsets = iter([1000.0, 1000.0004, 1600.0])
    monkeypatch.setattr(decode_module, "monotonic_to_epoch_offset", lambda: next(offsets))
    following = Decoder(node="t")
    assert following.decode(record).ts == pytest.approx(ts + 1000.0)      # jitter ignored
    assert following.decode(record).ts == pytest.approx(ts + 1600.0)      # 10 minutes suspended
    fixed = Decoder(node="t", clock_offset=5.0)
    assert fixed.decode(record).ts == pytest.approx(ts + 5.0)
