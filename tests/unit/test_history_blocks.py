"""tracer/history/blocks.py: the lines of an input block, written and read back exactly."""

from __future__ import annotations

import zlib
from types import MappingProxyType

from synthetic import HOST, ev, with_

from tracer.events.encode import EventEncoder
from tracer.events.event import Event
from tracer.history import blocks


def _events():
    tagged = ev("setns", 70, ns=with_(HOST, net=201), before=HOST, fd=3, raw_flags=0x40000000,
                ns_id={"net": 9001}, ns_id_before={"net": 4026531840})
    tagged.container, tagged.container_id, tagged.target_container = "web", "08be65e6", "db"
    brief = Event(kind="exit", seq=9, ts=1234.5678901234, pid=80, tid=80, ppid=None, uid=None, vpid=None,
                  comm="true", exit_code=0, brief=True)
    return [
        ev("clone", 50, ns=MappingProxyType(with_(HOST, uts=300)), before=MappingProxyType(HOST), shared=True,
           child_pid=51, child_vpid=1, raw_flags=0x04000011, cgroup_id=77),
        ev("exec", 51, filename="/bin/sh", args=["sh", "-c", "caf\u00e9 \u2603"]),
        tagged, brief,
    ]


def _block(lines):
    return zlib.compress("\n".join(lines).encode("utf-8"), 1)


def test_events_written_as_rows_read_back_equal_with_their_container_fields():
    events = _events()
    encode = EventEncoder()
    data = _block([blocks.line(i + 1, e.ts, "event", e, encode) for i, e in enumerate(events)])
    assert all(text.split(",")[2] == '"e"' for text in zlib.decompress(data).decode().split("\n"))
    back = [payload for _kind, payload in blocks.inputs_between([data], 0, 1e12)]
    assert back == events
    assert [(e.container, e.container_id, e.target_container) for e in back] == \
        [(e.container, e.container_id, e.target_container) for e in events]


def test_the_older_event_objects_still_read_and_ops_keep_their_form():
    events = _events()
    encoder = EventEncoder()
    old = ['[%d,%r,"event",%s]' % (i + 1, e.ts, encoder.encode(e, exact_ts=True)) for i, e in enumerate(events)]
    op = {"op": "procread", "pid": 5, "nested": False}
    data = _block(old + [blocks.line(len(events) + 1, 2000.0, "op", op, encoder)])
    back = list(blocks.inputs_between([data], 0, 1e12))
    assert [payload for _kind, payload in back[:-1]] == events and back[-1] == ("op", op)
    assert [row[2] for row in blocks.lines([(data,)])] == ["event"] * len(events) + ["op"]


def test_only_the_inputs_after_the_checkpoint_and_up_to_the_time_are_read():
    events = _events()
    encode = EventEncoder()
    stamps = [10.0, 20.0, 30.0, 40.0]
    first = _block([blocks.line(i + 1, stamps[i], "event", e, encode) for i, e in enumerate(events[:2])])
    second = _block([blocks.line(i + 3, stamps[i + 2], "event", e, encode) for i, e in enumerate(events[2:])])
    got = [p for _k, p in blocks.inputs_between([first, second], 1, 30.0)]
    assert got == events[1:3]


def test_the_encoders_row_text_is_the_rows_json():
    import json
    encoder = EventEncoder()
    for event in _events() * 2:          # twice: the second time from the encoder's caches
        assert json.loads(encoder.encode_row(event)) == json.loads(json.dumps(event.row()))


def test_rows_of_a_storm_share_their_text_but_keep_their_own_seq_time_and_tags():
    """encode_row keeps what follows ts per (fields, map identities, tags): events that differ
    only in seq and ts reuse it; any other difference, or a map that is equal but another
    object, is encoded afresh."""
    import json
    from types import MappingProxyType
    from tracer.events.event import Event
    ns = MappingProxyType({"uts": 4026532001})
    before = MappingProxyType({"uts": 4026531838})
    encoder = EventEncoder()

    def setns(seq, ts, pid=7, ns_map=ns, container=None):
        return Event("setns", seq, ts, pid, pid, 1, 0, pid, "sw", container=container, syscall="setns",
                     raw_flags=0x04000000, ret=0, fd=3, ns=ns_map, ns_before=before)
    storm = [setns(1, 10.5), setns(2, 10.25), setns(3, 11.0, pid=8), setns(4, 12.0, container="web"),
             setns(5, 13.0, ns_map=MappingProxyType({"uts": 4026532002})), setns(6, 14.0)]
    for event in storm:
        assert json.loads(encoder.encode_row(event)) == json.loads(json.dumps(event.row()))
    rows = [json.loads(encoder.encode_row(e)) for e in storm]
    assert [r[1] for r in rows] == [1, 2, 3, 4, 5, 6] and rows[1][2] == 10.25
    assert rows[3][-3] == "web" and rows[5][-3] is None
