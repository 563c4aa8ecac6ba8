"""Recordings: a graph's journal as JSON Lines (`nsgraph record`), and replaying one offline.

A recording is JSON Lines, one object per line:
  {"kind": "header", "format": "nsgraph-record", "version": 1, "node": ..., "started": T}
  {"kind": "state", "data": <NamespaceGraph.export_state()>}      the graph when recording began
  {"kind": "event"|"ops"|"op", "seq": N, "ts": T, "data": ...}     every later graph input
Inputs are what the graph journals (tracer events, snapshot/repair ops, /proc reads),
so a replay rebuilds exactly the graph the live run had, offline and without root.
The same encoding of journal records serves the SQLite history (store.py).
"""

from __future__ import annotations

import json
import queue
import threading
import time

from ..events.event import Event
from ..graph.model import NamespaceGraph
from .replay import replay_records


# -- journal records <-> JSON (shared with the SQLite history) ---------------------

def encode_input(kind: str, payload):
    if kind == "event":
        data = payload.to_json()
        data["ts"] = payload.ts          # the exact float: a replay must give identical times
        return data
    return payload


def decode_input(kind: str, data):
    if kind == "event":
        return Event.from_json(data)
    return data


class JsonlRecorder:
    """Writes a graph's journal to a file from a writer thread (never blocks the collector)."""

    def __init__(self, path: str, queue_size: int = 200_000):
        self.path = path
        self._queue = queue.Queue(maxsize=queue_size)
        self._file = open(path, "w", encoding="utf-8")
        self._thread = None
        self._graph = None
        self.dropped = 0
        self.written = 0

    def attach(self, graph) -> None:
        self._encode = encode_input
        with graph.lock:          # the state and the first journaled input must meet exactly
            state = graph.export_state()
            graph.add_journal(self._on_input)
        self._graph = graph
        self._file.write(json.dumps({"kind": "header", "format": "nsgraph-record", "version": 1,
                                     "node": graph.node, "started": time.time()}) + "\n")
        self._file.write(json.dumps({"kind": "state", "data": state}, separators=(",", ":")) + "\n")
        self._thread = threading.Thread(target=self._run, name="nsgraph-record", daemon=True)
        self._thread.start()

    def _on_input(self, kind, payload, seq) -> None:
        try:
            self._queue.put_nowait((kind, payload, seq, time.time()))
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                break
            kind, payload, seq, ts = item
            self._file.write(json.dumps({"kind": kind, "seq": seq, "ts": ts,
                                         "data": self._encode(kind, payload)}, separators=(",", ":")) + "\n")
            self.written += 1

    def detach(self) -> None:
        if self._graph is not None:
            self._graph.remove_journal(self._on_input)

    def close(self) -> None:
        self.detach()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
        self._file.close()


class ReplayError(Exception):
    pass


def replay_file(path: str, until: float = None):
    """The graph a recording rebuilds (at its end, or at time `until`)."""
    graph = None
    skipped = 0

    def records():
        nonlocal skipped
        for line in f:
            try:
                obj = json.loads(line)
                kind = obj["kind"]
                if obj["seq"] <= start_seq:
                    continue
                if until is not None and obj["ts"] > until:
                    return
                yield kind, decode_input(kind, obj["data"])
            except (ValueError, KeyError, TypeError):
                skipped += 1

    with open(path, encoding="utf-8") as f:
        header = f.readline()
        try:
            if json.loads(header).get("format") != "nsgraph-record":
                raise ReplayError("%s is not an nsgraph recording (no header line)" % path)
            state = json.loads(f.readline())
            if state.get("kind") != "state":
                raise ReplayError("%s: the second line must be the initial state" % path)
        except ValueError as exc:
            raise ReplayError("%s is not an nsgraph recording (%s)" % (path, exc)) from exc
        graph = NamespaceGraph.from_state(state["data"])
        start_seq = state["data"]["input_seq"]
        replay_records(graph, records())
    graph.counters["replay_skipped_lines"] = skipped
    return graph
