"""The fleet's wire encoding, version 2 (docs/fleet.md is the reference).

Three kinds of message, one subject each per node:

  nsgraph.<node>.events       a batch of the node graph's journal records, in order
  nsgraph.<node>.checkpoints  the node graph's whole state (NamespaceGraph.export_state)
  nsgraph.<node>.status       a heartbeat with health and loss counters

Events and checkpoints are zlib-compressed JSON objects; a status is plain JSON.
Headers carry what a reader needs without opening the body:

  Nats-Msg-Id     "<node>.<run>.e.<first seq>" / "<node>.<run>.c.<seq>": a resend of the
                  same message is dropped by JetStream's duplicate window
  Nsgraph-Wire    "2", the encoding version (a reader refuses versions it does not know)
  Nsgraph-Run     the agent run (a new random id at every agent start)
  Nsgraph-Seq     "first-last" (events) or "seq" (checkpoints): journal sequence numbers

The records of an events message are the graph's inputs first..last (contiguous within
a run: a reader that sees a hole knows exactly how much it missed, and waits for the
next checkpoint to repair it), written by column (columns.py): tracer events, thousands
a second, as one list per Event field; ops and /proc reads as recordings and the SQLite
history write them (tracer.history.recording.encode_input).  Version 1 (one list per
record) is still read; checkpoints and heartbeats are the same in both versions.
"""

from __future__ import annotations

import json
import time
import zlib
from dataclasses import dataclass, field
from typing import List, Optional

from .columns import decode_body, decode_rows, encode_body
from .subjects import check_node, parse_subject, subject

WIRE_VERSION = 2
READABLE = (1, 2)                   # version 1: agents not yet upgraded (events one list per record)
HEADER_WIRE = "Nsgraph-Wire"
HEADER_RUN = "Nsgraph-Run"
HEADER_SEQ = "Nsgraph-Seq"
HEADER_ENCODING = "Content-Encoding"
HEADER_MSG_ID = "Nats-Msg-Id"

MAX_EVENTS_BYTES = 64 << 20         # decompressed size a reader accepts (zlib bombs)
MAX_CHECKPOINT_BYTES = 512 << 20
MAX_RECORDS = 1 << 20               # records in one events message (the agent sends at most 2 000)
ZLIB_LEVEL = 1                      # fast: the agent's CPU matters more than the bytes


class WireError(ValueError):
    """A message that is not version-1 nsgraph wire data (counted and skipped by readers)."""


@dataclass
class OutMessage:
    """A message ready to publish, with what the outbox and the counters need."""
    subject: str
    body: bytes
    headers: dict
    kind: str                       # "events" or "checkpoints"
    first: int
    last: int
    records: int
    newest_ts: float = 0.0          # journal time of its newest record (latency)

    @property
    def size(self) -> int:
        return len(self.body) + 200


@dataclass
class EventsBatch:
    """Records first..last by column: journal time, kind and decoded input of each."""
    node: str
    run: str
    first: int
    last: int
    ts: List[float] = field(default_factory=list)
    kinds: List[str] = field(default_factory=list)          # "event", "op" or "ops"
    payloads: list = field(default_factory=list)            # Event, op dict, list of ops
    inputs: int = 0                                         # records that are not events

    @property
    def records(self) -> List[tuple]:
        """(seq, ts, kind, payload) per record."""
        return list(zip(range(self.first, self.last + 1), self.ts, self.kinds, self.payloads))


@dataclass
class Checkpoint:
    node: str
    run: str
    seq: int
    ts: float
    reason: str
    state: dict
    interval: Optional[float] = None


@dataclass
class Status:
    node: str
    run: str
    ts: float
    body: dict


_READABLE_HEADERS = tuple(str(v) for v in READABLE)
_READABLE_TEXT = "-".join(_READABLE_HEADERS[::len(READABLE) - 1])


def _pack(obj) -> bytes:
    return zlib.compress(json.dumps(obj, separators=(",", ":")).encode(), ZLIB_LEVEL)


def _headers(msg_id: str, run: str, seq: str) -> dict:
    return {HEADER_MSG_ID: msg_id, HEADER_WIRE: str(WIRE_VERSION), HEADER_RUN: run,
            HEADER_SEQ: seq, HEADER_ENCODING: "zlib"}


def encode_events(node: str, run: str, records: list) -> OutMessage:
    """records: (seq, ts, kind, payload) as the graph journaled them, contiguous."""
    first, last = records[0][0], records[-1][0]
    obj = {"v": WIRE_VERSION, "node": node, "run": run, "first": first, "last": last}
    obj.update(encode_body(records))
    return OutMessage(subject(node, "events"), _pack(obj),
                      _headers("%s.%s.e.%d" % (node, run, first), run, "%d-%d" % (first, last)),
                      "events", first, last, len(records), records[-1][1])


def encode_checkpoint(node: str, run: str, state: dict, reason: str, interval: float) -> OutMessage:
    seq = int(state["input_seq"])
    body = _pack({"v": WIRE_VERSION, "node": node, "run": run, "seq": seq, "ts": time.time(),
                  "reason": reason, "interval": interval, "state": state})
    return OutMessage(subject(node, "checkpoints"), body,
                      _headers("%s.%s.c.%d" % (node, run, seq), run, str(seq)),
                      "checkpoints", seq, seq, 0, time.time())


def encode_status(node: str, run: str, body: dict) -> bytes:
    out = {"v": WIRE_VERSION, "node": node, "run": run, "ts": time.time()}
    out.update(body)
    return json.dumps(out, separators=(",", ":"), default=str).encode()


# -- reading ------------------------------------------------------------------------------

def _unpack(data: bytes, limit: int):
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(data, limit)
    except zlib.error as exc:
        raise WireError("body is not zlib data (%s)" % exc) from None
    if inflater.unconsumed_tail:
        raise WireError("body inflates to more than %d bytes" % limit)
    return _json(raw)


def _json(raw: bytes):
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WireError("body is not JSON (%s)" % exc) from None
    if not isinstance(obj, dict):
        raise WireError("body is not a JSON object")
    return obj


def _common(obj: dict, node: str) -> str:
    if obj.get("v") not in READABLE:
        raise WireError("wire version %r; this nsgraph reads versions %s (upgrade the dashboard)"
                        % (obj.get("v"), _READABLE_TEXT))
    if obj.get("node") != node:
        raise WireError("body names node %r but came on node %r's subject" % (obj.get("node"), node))
    run = obj.get("run")
    if not isinstance(run, str) or not run:
        raise WireError("no run id")
    return run


def decode(subj: str, headers: Optional[dict], data: bytes):
    """An EventsBatch, Checkpoint or Status; WireError when the message is not ours."""
    parsed = parse_subject(subj)
    if parsed is None:
        raise WireError("subject %r is not a fleet subject" % subj)
    node, kind = parsed
    check_node(node)
    version = (headers or {}).get(HEADER_WIRE)
    if kind != "status" and version is not None and version not in _READABLE_HEADERS:
        raise WireError("wire version %r in the header; this nsgraph reads versions %s (upgrade the dashboard)"
                        % (version, _READABLE_TEXT))
    if kind == "status":
        obj = _json(data)
        run = _common(obj, node)
        return Status(node, run, _number(obj.get("ts"), "ts"), obj)
    if kind == "checkpoints":
        obj = _unpack(data, MAX_CHECKPOINT_BYTES)
        run = _common(obj, node)
        state = obj.get("state")
        if not isinstance(state, dict) or state.get("input_seq") != obj.get("seq"):
            raise WireError("checkpoint state missing or not at its own sequence number")
        return Checkpoint(node, run, int(obj["seq"]), _number(obj.get("ts"), "ts"),
                          str(obj.get("reason", "")), state, obj.get("interval"))
    obj = _unpack(data, MAX_EVENTS_BYTES)
    run = _common(obj, node)
    first, last = obj.get("first"), obj.get("last")
    if type(first) is not int or type(last) is not int or not 0 < first <= last:
        raise WireError("events message without its first and last record numbers")
    if last - first >= MAX_RECORDS:
        raise WireError("events message of %d records (at most %d)" % (last - first + 1, MAX_RECORDS))
    try:
        if obj["v"] == 1:
            columns = decode_rows(obj, first)
        else:
            columns = decode_body(obj, first, last)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise WireError("malformed records: %s" % (str(exc)[:200] or type(exc).__name__)) from None
    if len(columns[0]) != last - first + 1:
        raise WireError("%d records, the message says %d-%d" % (len(columns[0]), first, last))
    return EventsBatch(node, run, first, last, *columns)


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise WireError("%s is not a number" % what)
    return float(value)
