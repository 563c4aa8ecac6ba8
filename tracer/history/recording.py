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
    """Writes a graph's journal to a file from a writer thread (never blocks the collector).

    A write that fails (a full disk, an I/O error) stops the writer at once: `failed`
    is set (the caller stops recording and says so), `error` holds one line, and the
    inputs that could not be written are counted in `dropped`.
    """

    def __init__(self, path: str, queue_size: int = 200_000):
        self.path = path
        self._queue = queue.Queue(maxsize=queue_size)
        self._file = open(path, "w", encoding="utf-8")
        self._thread = None
        self._graph = None
        self.dropped = 0
        self.written = 0
        self.error = None
        self.failed = threading.Event()

    @property
    def attached(self) -> bool:
        return self._graph is not None

    def attach(self, graph) -> None:
        """Write the header and the graph's state, then every input (raises OSError when the
        first lines cannot be written)."""
        self._encode = encode_input
        with graph.lock:          # the state and the first journaled input must meet exactly
            state = graph.export_state()
            graph.add_journal(self._on_input)
        self._graph = graph
        try:
            self._file.write(json.dumps({"kind": "header", "format": "nsgraph-record", "version": 1,
                                         "node": graph.node, "started": time.time()}) + "\n")
            self._file.write(json.dumps({"kind": "state", "data": state}, separators=(",", ":")) + "\n")
            self._file.flush()
        except OSError as exc:
            self._fail(exc)
            raise
        self._thread = threading.Thread(target=self._run, name="nsgraph-record", daemon=True)
        self._thread.start()

    def _on_input(self, kind, payload, seq) -> None:
        if self.failed.is_set():
            self.dropped += 1
            return
        try:
            self._queue.put_nowait((kind, payload, seq, time.time()))
        except queue.Full:
            self.dropped += 1

    def _fail(self, exc: OSError) -> None:
        self.error = "writing %s failed: %s" % (self.path, exc.strerror or exc)
        self.failed.set()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                break
            if self.failed.is_set():
                self.dropped += 1
                continue
            kind, payload, seq, ts = item
            try:
                self._file.write(json.dumps({"kind": kind, "seq": seq, "ts": ts,
                                             "data": self._encode(kind, payload)}, separators=(",", ":")) + "\n")
                if self._queue.empty():
                    self._file.flush()     # a full disk shows now, not at close
                self.written += 1
            except OSError as exc:
                self.dropped += 1
                self._fail(exc)

    def detach(self) -> None:
        if self._graph is not None:
            self._graph.remove_journal(self._on_input)

    def close(self) -> None:
        """Stop and close the file; never raises (a failure is in `error`)."""
        self.detach()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
        try:
            self._file.close()
        except OSError as exc:       # the last buffered lines could not be written
            if self.error is None:
                self._fail(exc)


class ReplayError(Exception):
    """The file cannot be replayed at all (not a recording, unreadable state); one line."""


# The kinds of input lines a replay understands (what graphs journal).
INPUT_KINDS = ("event", "ops", "op")


class ReplayReport:
    """What a replay skipped, by reason, with the first line number of each."""

    def __init__(self):
        self.lines = 0
        self.skipped = {}            # reason -> [count, first line number]
        self.truncated_tail = False  # the last line had no newline and no valid JSON (cut short)

    def skip(self, reason: str, number: int) -> None:
        entry = self.skipped.setdefault(reason, [0, number])
        entry[0] += 1

    @property
    def skipped_total(self) -> int:
        return sum(n for n, _ in self.skipped.values())

    def summary(self) -> str:
        parts = ["%d %s (first at line %d)" % (n, reason, first)
                 for reason, (n, first) in sorted(self.skipped.items(), key=lambda kv: kv[1][1])]
        return "skipped %d of %d lines: %s" % (self.skipped_total, self.lines, "; ".join(parts))


def _json_line(raw: bytes, number: int, what: str):
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ReplayError("%s (line %d) is not UTF-8 text" % (what, number))
    except ValueError as exc:
        raise ReplayError("%s (line %d) is not JSON (%s)" % (what, number, exc))


def _input(obj, start_seq: int, until):
    """(kind, payload), None to skip silently (before the state), or a reason string."""
    if not isinstance(obj, dict):
        return "lines that are not JSON objects"
    kind = obj.get("kind")
    if kind not in INPUT_KINDS:
        return "lines of unknown kind %r" % (kind,) if isinstance(kind, str) else "lines without a kind"
    seq, ts, data = obj.get("seq"), obj.get("ts"), obj.get("data")
    if not isinstance(seq, int) or not isinstance(ts, (int, float)) or isinstance(seq, bool):
        return "lines with a missing or malformed seq/ts"
    if seq <= start_seq:
        return None
    if until is not None and ts > until:
        return StopIteration
    if kind == "event" and not isinstance(data, dict) or kind == "ops" and not (
            isinstance(data, list) and all(isinstance(op, dict) for op in data)) or kind == "op" and not (
            isinstance(data, dict)):
        return "%s lines whose data has the wrong shape" % kind
    try:
        return kind, decode_input(kind, data)
    except (KeyError, TypeError, ValueError, AttributeError):
        return "%s lines whose data has the wrong shape" % kind


def replay_file(path: str, until: float = None, report: ReplayReport = None):
    """The graph a recording rebuilds (at its end, or at time `until`).  Lines that cannot
    be used are skipped and counted in `report`; ReplayError when nothing can be replayed."""
    from ..graph.model import NamespaceGraph
    from .replay import replay_records
    report = report if report is not None else ReplayReport()
    with open(path, "rb") as f:
        header_raw, state_raw = f.readline(), f.readline()
        if not header_raw:
            raise ReplayError("%s is empty, not an nsgraph recording" % path)
        header = _json_line(header_raw, 1, "%s: the header" % path)
        if not isinstance(header, dict) or header.get("format") != "nsgraph-record":
            raise ReplayError("%s is not an nsgraph recording (line 1 is not its header)" % path)
        if not state_raw:
            raise ReplayError("%s: the recording ends after its header (no initial state)" % path)
        state = _json_line(state_raw, 2, "%s: the initial state" % path)
        if not isinstance(state, dict) or state.get("kind") != "state" or not isinstance(state.get("data"), dict):
            raise ReplayError("%s: line 2 must be the initial state ({\"kind\": \"state\", \"data\": {...}})" % path)
        try:
            graph = NamespaceGraph.from_state(state["data"])
            start_seq = int(state["data"]["input_seq"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ReplayError("%s: the initial state (line 2) is malformed (%s: %s)"
                              % (path, type(exc).__name__, exc))
        report.lines = 2

        def records():
            number = 2
            for raw in f:
                number += 1
                report.lines = number
                if not raw.strip():
                    continue
                try:
                    obj = json.loads(raw.decode("utf-8"))
                except UnicodeDecodeError:
                    report.skip("lines that are not UTF-8", number)
                    continue
                except ValueError:
                    if not raw.endswith(b"\n"):
                        report.truncated_tail = True
                    else:
                        report.skip("lines that are not JSON", number)
                    continue
                item = _input(obj, start_seq, until)
                if item is StopIteration:
                    return
                if isinstance(item, str):
                    report.skip(item, number)
                elif item is not None:
                    yield item
        replay_records(_Guarded(graph, report), records())
    graph.counters["replay_skipped_lines"] = report.skipped_total
    return graph


class _Guarded:
    """The graph as replay_records sees it: an input the graph cannot apply (a well-formed
    line with impossible content) is skipped and counted, not a traceback."""

    def __init__(self, graph, report: ReplayReport):
        self._graph = graph
        self._report = report

    def _call(self, method, *args) -> None:
        try:
            method(*args)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            self._report.skip("inputs the graph rejected (%s)" % type(exc).__name__, self._report.lines)

    # What history/replay.py's replay_records uses: apply, apply_ops, reader.stash/drain.
    def apply(self, event) -> None:
        self._call(self._graph.apply, event)

    def apply_ops(self, ops) -> None:
        self._call(self._graph.apply_ops, ops)

    @property
    def reader(self):
        return self

    def stash(self, op) -> None:
        self._call(self._graph.reader.stash, op)

    def drain(self) -> list:
        return self._graph.reader.drain()
