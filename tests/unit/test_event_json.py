"""The fast event encoder writes exactly what json.dumps(event.to_json()) writes."""

from __future__ import annotations

import json
import os
import random

from hypothesis import given, settings, strategies as st

from tracer.events.encode import EventEncoder
from tracer.events.decode import Decoder
from tracer.events.event import Event

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "recorded_events.json")


def reference(event, exact_ts=False):
    obj = event.to_json()
    if exact_ts:
        obj["ts"] = event.ts
    return json.dumps(obj, separators=(",", ":"))


def recorded_events():
    with open(DATA) as f:
        records = [bytes.fromhex(h) for h in json.load(f)["records"]]
    return Decoder(node="n\"ode", clock_offset=1.7e9).decode_many(records)


def test_recorded_events_encode_as_to_json():
    encoder = EventEncoder()
    events = recorded_events()
    assert {e.kind for e in events} >= {"clone", "unshare", "setns", "exec", "exit"}
    for _ in range(2):            # the second round comes from the caches
        for event in events:
            assert encoder.encode(event) == reference(event)
            assert encoder.encode(event, exact_ts=True) == reference(event, exact_ts=True)


def test_container_and_odd_strings():
    encoder = EventEncoder()
    event = Event(kind="exec", seq=3, ts=1.5, pid=1, tid=1, ppid=0, uid=0, vpid=1, comm="a\"b\\c\u00e9\x01",
                  filename="/bin/\u2603", args=["x", "y\n"], ns={"uts": 5}, ns_before={"uts": 4})
    event.container = "web-1"
    assert encoder.encode(event) == reference(event)


@settings(max_examples=400, deadline=None)
@given(st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_timestamps_round_like_datetime(ts):
    event = Event(kind="exit", seq=1, ts=ts, pid=1, tid=1, ppid=None, uid=None, vpid=None, comm="x",
                  exit_code=0, brief=True)
    assert EventEncoder().encode(event) == reference(event)


def test_timestamps_near_whole_seconds():
    rng = random.Random(5)
    encoder = EventEncoder()
    for _ in range(2000):
        ts = rng.randrange(1_700_000_000, 1_800_000_000) + rng.choice((0.0, 0.9999995, 0.0000005, 0.9999999))
        event = Event(kind="exit", seq=1, ts=ts, pid=1, tid=1, ppid=None, uid=None, vpid=None, comm="x")
        assert encoder.encode(event) == reference(event)


def test_events_that_share_everything_after_seq_but_one_field_each_encode_as_to_json():
    """A storm's events share their text after "seq" (cached): any field that differs,
    a map that is another object with other values, or a container tag, must show."""
    encoder = EventEncoder()
    ns, before = {"net": 7}, {"net": 6}
    base = dict(kind="setns", seq=1, ts=1.25, pid=10, tid=10, ppid=1, uid=0, vpid=10, comm="storm", syscall="setns",
                raw_flags=0x40000000, ret=-9, fd=3, ns=ns, ns_before=before, ns_id=ns, node="n", cgroup_id=4)
    variants = [{}, {"seq": 2, "ts": 2.5}, {"ret": 0}, {"fd": 4}, {"pid": 11}, {"comm": "other"}, {"cgroup_id": 5},
                {"ns": {"net": 8}}, {"ns_before": {"net": 9}}, {"ns_id_before": {"net": 1}}, {"node": "m"},
                {"kind": "unshare", "syscall": "unshare"}, {"raw_flags": 0x20000000}, {"brief": True}]
    events = [Event(**dict(base, **change)) for change in variants]
    tagged = Event(**base)
    tagged.container, tagged.container_id, tagged.target_container = "web", "c0ffee", "db"
    events.append(tagged)
    for _ in range(2):
        for event in events:
            assert encoder.encode(event) == reference(event)
    again = dict(ns)                # equal values, another object: encoded from it, not from the cache
    again["net"] = 70
    ns_changed = Event(**dict(base, ns=again, ns_id=again))
    assert encoder.encode(ns_changed) == reference(ns_changed)
