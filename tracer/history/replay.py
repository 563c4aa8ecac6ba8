"""Replaying a graph's journal (recordings, the SQLite history) into an offline graph."""

from __future__ import annotations


def replay_records(graph, records) -> None:
    """Feed (kind, payload) journal records to an offline NamespaceGraph, in journal order,
    except that a read made while the live run applied an event or ops (op["nested"]) is
    journaled after them and must be stashed before them: the model asks for it then."""
    pending = None
    for kind, payload in records:
        if kind == "op" and payload.get("nested"):
            graph.replay_input(kind, payload)       # stashed, not applied
            continue
        if pending is not None:
            graph.replay_input(*pending)
            pending = None
        if kind in ("event", "ops"):
            pending = (kind, payload)
        else:
            graph.replay_input(kind, payload)
    if pending is not None:
        graph.replay_input(*pending)
    graph.flush_stash()
