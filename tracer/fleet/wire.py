"""The fleet's wire encoding, version 1 (docs/fleet.md is the reference).

Three kinds of message, one subject each per node:

  nsgraph.<node>.events       a batch of the node graph's journal records, in order
  nsgraph.<node>.checkpoints  the node graph's whole state (NamespaceGraph.export_state)
  nsgraph.<node>.status       a heartbeat with health and loss counters

Events and checkpoints are zlib-compressed JSON objects; a status is plain JSON.
Headers carry what a reader needs without opening the body:

  Nats-Msg-Id     "<node>.<run>.e.<first seq>" / "<node>.<run>.c.<seq>": a resend of the
                  same message is dropped by JetStream's duplicate window
  Nsgraph-Wire    "1", the encoding version (a reader refuses versions it does not know)
  Nsgraph-Run     the agent run (a new random id at every agent start)
  Nsgraph-Seq     "first-last" (events) or "seq" (checkpoints): journal sequence numbers

A journal record is [seq, ts, kind, data]: the graph's input number, the time it was
journaled, and the input.  Ops and /proc reads are written as recordings and the
SQLite history write them (tracer.history.recording.encode_input), and they replay
through the same path.  Tracer events, the bulk of the traffic (thousands a second),
are written compactly: `data` is the list of the Event's attribute values in the order
the message's "fields" names, not Event.to_json() (whose derived fields - ISO time,
flag and errno names - cost the agent and the dashboard more than everything else
together).  A reader builds Events from the names it knows, so fields added to Event
later reach a newer reader and an older one ignores them.  The sequence numbers of
one run are contiguous: a reader that sees a hole knows exactly how much it missed,
and waits for the next checkpoint to repair it.
"""

from __future__ import annotations

import dataclasses
import json
import operator
import time
import zlib
from dataclasses import dataclass, field
from typing import List, Optional

from ..events import event as event_module
from ..events.event import Event
from ..history.recording import decode_input, encode_input
from .subjects import check_node, parse_subject, subject

WIRE_VERSION = 1
HEADER_WIRE = "Nsgraph-Wire"
HEADER_RUN = "Nsgraph-Run"
HEADER_SEQ = "Nsgraph-Seq"
HEADER_ENCODING = "Content-Encoding"
HEADER_MSG_ID = "Nats-Msg-Id"

MAX_EVENTS_BYTES = 64 << 20         # decompressed size a reader accepts (zlib bombs)
MAX_CHECKPOINT_BYTES = 512 << 20
ZLIB_LEVEL = 1                      # fast: the agent's CPU matters more than the bytes


# Event's tuple fields in their order, then the container the tagger set (an attribute).
EVENT_FIELDS = tuple(name for name, _default in event_module.EVENT_FIELDS) + ("container",)
MAP_FIELDS = ("ns", "ns_before", "ns_id", "ns_id_before")
_EVENT_VALUES = operator.attrgetter(*EVENT_FIELDS)
_MAPS = tuple(i for i, name in enumerate(EVENT_FIELDS) if name in MAP_FIELDS)
_KNOWN = frozenset(EVENT_FIELDS)
_TUPLE_LEN = len(event_module.EVENT_FIELDS)     # the container comes after the tuple's fields
_tuple_new = tuple.__new__


class MapTable:
    """The namespace maps of one message, each written once: events refer to them by index.

    Nearly every event of a host carries one of a few maps (the host's own, a container's),
    four times (before/after, inodes/ids): sent whole, they would be most of the bytes and
    of the encoding time.  Decoded events share the map objects, as the decoder's do."""

    def __init__(self, maps=None):
        self.maps = list(maps or [])
        self._index = {}
        self._by_id = {}

    def ref(self, mapping) -> int:
        hit = self._by_id.get(id(mapping))
        if hit is not None and hit[0] is mapping:
            return hit[1]
        key = tuple(mapping.items())
        i = self._index.get(key)
        if i is None:
            i = self._index[key] = len(self.maps)
            self.maps.append(dict(mapping))
        self._by_id[id(mapping)] = (mapping, i)
        return i


def event_row(event, table: MapTable) -> list:
    """An Event as the list of its attribute values (EVENT_FIELDS order), maps by reference."""
    row = list(_EVENT_VALUES(event))
    for i in _MAPS:
        if row[i] is not None:
            row[i] = table.ref(row[i])
    return row


def event_from_row(fields, maps_at, row, maps) -> Event:
    if len(row) != len(fields):
        raise ValueError("%d values for %d fields" % (len(row), len(fields)))
    for i in maps_at:
        if row[i] is not None:
            row[i] = maps[row[i]]
    if fields is EVENT_FIELDS:
        # This version's own layout (every agent of the same version): the row is the
        # Event's tuple plus the container, so it is built as the decoder builds Events,
        # without Event()'s keyword handling (most of the dashboard's decoding time).
        event = _tuple_new(Event, row[:_TUPLE_LEN])
        if row[_TUPLE_LEN] is not None:
            event.container = row[_TUPLE_LEN]
        return event
    return Event(**{name: value for name, value in zip(fields, row) if name in _KNOWN})


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
    node: str
    run: str
    first: int
    last: int
    records: List[tuple] = field(default_factory=list)   # (seq, ts, kind, payload), decoded


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


def _pack(obj) -> bytes:
    return zlib.compress(json.dumps(obj, separators=(",", ":")).encode(), ZLIB_LEVEL)


def _headers(msg_id: str, run: str, seq: str) -> dict:
    return {HEADER_MSG_ID: msg_id, HEADER_WIRE: str(WIRE_VERSION), HEADER_RUN: run,
            HEADER_SEQ: seq, HEADER_ENCODING: "zlib"}


def encode_events(node: str, run: str, records: list) -> OutMessage:
    """records: (seq, ts, kind, payload) as the graph journaled them, contiguous."""
    table = MapTable()
    rows = [[seq, ts, kind, event_row(payload, table) if kind == "event" else encode_input(kind, payload)]
            for seq, ts, kind, payload in records]
    first, last = records[0][0], records[-1][0]
    body = _pack({"v": WIRE_VERSION, "node": node, "run": run, "first": first, "last": last,
                  "fields": EVENT_FIELDS, "maps": table.maps, "records": rows})
    return OutMessage(subject(node, "events"), body,
                      _headers("%s.%s.e.%d" % (node, run, first), run, "%d-%d" % (first, last)),
                      "events", first, last, len(rows), records[-1][1])


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
    if obj.get("v") != WIRE_VERSION:
        raise WireError("wire version %r; this nsgraph reads version %d (upgrade the dashboard)"
                        % (obj.get("v"), WIRE_VERSION))
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
    if kind != "status" and version is not None and version != str(WIRE_VERSION):
        raise WireError("wire version %r in the header; this nsgraph reads version %d" % (version, WIRE_VERSION))
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
    rows = obj.get("records")
    if not isinstance(rows, list) or not rows:
        raise WireError("events message without records")
    fields = obj.get("fields")
    maps = obj.get("maps")
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields) or not isinstance(maps, list):
        raise WireError("events message without its lists of event fields and namespace maps")
    fields = EVENT_FIELDS if tuple(fields) == EVENT_FIELDS else tuple(fields)
    maps_at = [i for i, name in enumerate(fields) if name in MAP_FIELDS]
    records = []
    expect = obj.get("first")
    for row in rows:
        try:
            seq, ts, kind_, payload = row
            if seq != expect:
                raise WireError("records out of sequence (%r where %r was due)" % (seq, expect))
            value = event_from_row(fields, maps_at, payload, maps) if kind_ == "event" else decode_input(kind_, payload)
            records.append((int(seq), float(ts), kind_, value))
        except WireError:
            raise
        except (TypeError, ValueError, KeyError) as exc:
            raise WireError("malformed record %r: %s" % (str(row)[:80], exc)) from None
        expect += 1
    if records[-1][0] != obj.get("last"):
        raise WireError("records end at %d, the message says %r" % (records[-1][0], obj.get("last")))
    return EventsBatch(node, run, records[0][0], records[-1][0], records)


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise WireError("%s is not a number" % what)
    return float(value)
