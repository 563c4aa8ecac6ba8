"""Replaying a graph's journal (recordings, the SQLite history) into an offline graph.

The journal (NamespaceGraph.add_journal) holds every input in the order it was
applied: ("event", Event), ("ops", [op, ...]) and ("op", procread op) for a lazy
/proc read.  A read made while the live run applied an event or ops is marked
"nested" and journaled after that input (it happened during it): the replay
hands it to the graph's ReplayProcReader *before* feeding the input, so the
model finds it when it asks, as the live model found /proc.
"""

from __future__ import annotations


def replay_input(graph, kind: str, payload) -> None:
    """Feed one journal record to an offline graph (nested reads are only stashed)."""
    if kind == "event":
        graph.apply(payload)
    elif kind == "ops":
        graph.apply_ops(payload)
    elif kind == "op":
        if payload.get("nested"):
            graph.reader.stash(payload)
        else:
            graph.apply_ops([payload])


def replay_records(graph, records) -> None:
    """Feed (kind, payload) journal records to an offline NamespaceGraph in journal order,
    each nested read ahead of the event or ops whose application made it."""
    pending = None
    for kind, payload in records:
        if kind == "op" and payload.get("nested"):
            graph.reader.stash(payload)
            continue
        if pending is not None:
            replay_input(graph, *pending)
            pending = None
        if kind in ("event", "ops"):
            pending = (kind, payload)
        else:
            replay_input(graph, kind, payload)
    if pending is not None:
        replay_input(graph, *pending)
    # Reads the recording holds that no replayed input asked for (it ended first).
    leftover = graph.reader.drain()
    if leftover:
        graph.apply_ops(leftover)
