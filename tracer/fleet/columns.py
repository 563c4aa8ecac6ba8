"""The body of an events message: a batch of journal records, by column (wire version 2).

A dashboard replays every record of every node (15 000 a second for three busy nodes),
so what it pays per record bounds the fleet.  Version 1 sent one JSON list per record
and rebuilt each Event in a Python loop; version 2 sends one list per Event field
(a column), so a whole batch is read by one json.loads and turned into Events by
zip/map at C speed, and a column whose values are all equal (the node, a storm's
command name, a container nobody set) is written once as {"all": value}.

  {"v": 2, "node": N, "run": R, "first": F, "last": L,
   "ts":      [journal time of each record, L-F+1 floats],
   "inputs":  [[index, "op"|"ops", data], ...]   the records that are not tracer events,
                                                 by their index in the batch (0 = seq F)
   "fields":  ["kind", "seq", "ts", ...],        the Event attributes the columns hold
   "maps":    [{"mnt": 4026531832, ...}, ...],   each namespace map of the batch, once
   "columns": [[...] | {"all": value}, ...]}     one per field, a value per event record
                                                 in order; map fields hold indexes into maps

The events fill, in order, the indexes that `inputs` does not name.  A reader builds
Events from the field names it knows (a field added later reaches newer readers; older
ones ignore it), and reads version-1 bodies too (`decode_rows`), so dashboards can be
upgraded before their agents.  Nothing here depends on the kernel's record layout: the
fields are the decoded Event's, by name.
"""

from __future__ import annotations

import itertools
import operator

from ..events import event as event_module
from ..events.event import Event
from ..history.recording import decode_input, encode_input

# The Event's tuple fields in their order, then what the container tagger sets.
TAGS = ("container", "container_id", "target_container")
EVENT_FIELDS = tuple(name for name, _default in event_module.EVENT_FIELDS) + TAGS
MAP_FIELDS = ("ns", "ns_before", "ns_id", "ns_id_before")
TUPLE_LEN = len(event_module.EVENT_FIELDS)
_VALUES = operator.attrgetter(*EVENT_FIELDS)
_MAP_AT = frozenset(i for i, name in enumerate(EVENT_FIELDS) if name in MAP_FIELDS)
_KNOWN = frozenset(EVENT_FIELDS)
_INPUT_KINDS = ("op", "ops")
_tuple_new = tuple.__new__
_repeat = itertools.repeat


class MapTable:
    """The namespace maps of one message, each written once: events refer to them by index.

    Nearly every event of a host carries one of a few maps (the host's own, a container's),
    four times (before/after, inodes/ids): sent whole, they would be most of the bytes and
    of the encoding time.  Decoded events share the map objects, as the decoder's do."""

    def __init__(self):
        self.maps = []
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


def encode_body(records: list) -> dict:
    """The version-2 body's record part for (seq, ts, kind, payload) records, contiguous."""
    events, inputs = [], []
    for i, (_seq, _ts, kind, payload) in enumerate(records):
        if kind == "event":
            events.append(payload)
        else:
            inputs.append([i, kind, encode_input(kind, payload)])
    table = MapTable()
    columns = []
    if events:
        count = len(events)
        for i, column in enumerate(zip(*map(_VALUES, events))):
            if i in _MAP_AT:
                ref = table.ref
                column = [None if value is None else ref(value) for value in column]
            first = column[0]
            # The same value all along: written once (every field of a storm but seq and ts).
            columns.append({"all": first} if column.count(first) == count else column)
    else:
        columns = [[] for _ in EVENT_FIELDS]
    return {"ts": [r[1] for r in records], "inputs": inputs, "fields": EVENT_FIELDS, "maps": table.maps,
            "columns": columns}


def decode_body(obj: dict, first: int, last: int):
    """(journal times, kinds, payloads, number of inputs) of a version-2 body; ValueError,
    TypeError or KeyError for anything malformed (the caller turns them into WireError)."""
    count = last - first + 1
    ts = obj["ts"]
    if not isinstance(ts, list) or len(ts) != count:
        raise ValueError("%s journal times for %d records" % (len(ts) if isinstance(ts, list) else "no", count))
    sum(ts)                         # TypeError unless every one is a number (C speed)
    inputs = obj.get("inputs") or []
    if not isinstance(inputs, list):
        raise ValueError("inputs is not a list")
    events = _events(obj["fields"], obj["maps"], obj["columns"], count - len(inputs))
    if not inputs:
        return ts, list(_repeat("event", count)), events, 0
    kinds = ["event"] * count
    payloads = [None] * count
    taken, previous = set(), -1
    for index, kind, data in inputs:
        if type(index) is not int or not previous < index < count or kind not in _INPUT_KINDS:
            raise ValueError("input %r: no such record index or kind" % ([index, kind],))
        previous = index
        kinds[index] = kind
        payloads[index] = _input(kind, data)
        taken.add(index)
    slots = (i for i in range(count) if i not in taken)
    for i, event in zip(slots, events):
        payloads[i] = event
    return ts, kinds, payloads, len(inputs)


def _input(kind: str, data):
    """An op (an object) or ops (a list of objects), checked here: a replay thread would
    otherwise fail on it, again at every attempt."""
    if not (isinstance(data, dict) if kind == "op" else
            isinstance(data, list) and all(isinstance(op, dict) for op in data)):
        raise ValueError("%s data that is not %s" % (kind, "an object" if kind == "op" else "a list of objects"))
    return decode_input(kind, data)


def _events(fields, maps, columns, count: int) -> list:
    if count < 0:
        raise ValueError("more inputs than records")
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        raise ValueError("fields is not a list of names")
    if not isinstance(maps, list) or not isinstance(columns, list) or len(columns) != len(fields):
        raise ValueError("%s columns for %d fields" % (len(columns) if isinstance(columns, list) else "no",
                                                       len(fields)))
    lookup = dict(enumerate(maps))
    lookup[None] = None
    values = []
    for name, column in zip(fields, columns):
        if isinstance(column, dict):
            if len(column) != 1 or "all" not in column:
                raise ValueError("column %s: an object other than {\"all\": value}" % name)
            value = column["all"]
            if name in MAP_FIELDS:
                value = lookup[value]
            values.append(_repeat(value, count))
        elif isinstance(column, list) and len(column) == count:
            values.append(list(map(lookup.__getitem__, column)) if name in MAP_FIELDS else column)
        else:
            raise ValueError("column %s: not %d values" % (name, count))
    if tuple(fields) != EVENT_FIELDS:
        # Another version's layout: by name, through Event()'s checks (slower, but rare).
        known = [(i, name) for i, name in enumerate(fields) if name in _KNOWN]
        return [Event(**{name: row[i] for i, name in known}) for row in zip(*values)]
    # This version's own layout: the first columns are the Event's tuple, built as the
    # kernel decoder builds Events, without Event()'s keyword handling.
    events = list(map(_tuple_new, _repeat(Event), zip(*values[:TUPLE_LEN])))
    for name, column in zip(TAGS, values[TUPLE_LEN:]):
        if isinstance(column, _repeat):
            value = next(column, None)
            if value is not None:
                for event in events:
                    setattr(event, name, value)
        else:
            for event, value in zip(events, column):
                if value is not None:
                    setattr(event, name, value)
    return events


def decode_rows(obj: dict, first: int):
    """Version 1: one list per record, [seq, ts, kind, data] (agents not yet upgraded)."""
    rows = obj["records"]
    fields = obj["fields"]
    maps = obj["maps"]
    if not isinstance(rows, list) or not isinstance(fields, list) or not isinstance(maps, list):
        raise ValueError("records, fields or maps is not a list")
    ts, kinds, payloads = [], [], []
    expect = first
    for seq, t, kind, data in rows:
        if seq != expect:
            raise ValueError("records out of sequence (%r where %r was due)" % (seq, expect))
        if kind == "event":
            if len(data) != len(fields):
                raise ValueError("%d values for %d fields" % (len(data), len(fields)))
            data = _events(fields, maps, [[value] for value in data], 1)[0]
        elif kind in _INPUT_KINDS:
            data = _input(kind, data)
        else:
            raise ValueError("record %r: unknown kind %r" % (seq, kind))
        ts.append(float(t))
        kinds.append(kind)
        payloads.append(data)
        expect += 1
    return ts, kinds, payloads, sum(1 for kind in kinds if kind != "event")
