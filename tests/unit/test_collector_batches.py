"""The collector's hand-over to batch subscribers (the graph) when a poll never ends: under
a storm faster than the poll thread the ring is never empty, and the graph must still hear
(in pieces), with sync markers counted once the events before them were handed over."""

from __future__ import annotations

import json
import os

from tracer.kernel import collector as collector_module
from tracer.kernel.collector import Collector

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "recorded_events.json")


def recorded():
    with open(DATA) as f:
        return [bytes.fromhex(h) for h in json.load(f)["records"]]


def test_a_poll_that_reads_more_than_max_batch_hands_events_over_in_pieces(monkeypatch):
    monkeypatch.setattr(collector_module, "MAX_BATCH", 8)
    c = Collector()
    heard = []
    c.subscribe_batch(lambda batch: heard.append(len(batch)))
    records = recorded() * 3      # the decoder numbers them: repeats are events of their own
    for start in range(0, len(records), 5):         # one poll's ring batches, the poll not over
        c._on_records(records[start:start + 5])
    assert heard and all(n >= 8 for n in heard)     # handed over during the poll
    assert sum(heard) + len(c._batch) == len(records) == c.events
    c._deliver_batch()                              # the poll's end: the rest
    assert sum(heard) == len(records) and not c._batch
