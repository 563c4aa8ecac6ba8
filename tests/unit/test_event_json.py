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
