"""Input blocks of the history database: one writer batch of graph inputs per row.

A block is zlib'd JSON lines, one input each: `[seq,ts,kind,data]`.  A tracer
event is written as kind "e" with data Event.row() (its field values in order,
about 40 % of its JSON object and half the time to decode); ops and reads as
recording.encode_input writes them (kind "event" with the event's JSON object
is what older databases hold, and still reads).  A rebuild decodes only what it
replays: every line starts with its sequence number and time, which are read
first, so the inputs before the checkpoint and after the time asked for are
skipped without being parsed.
"""

from __future__ import annotations

import json
import zlib

from ..events.event import Event
from .recording import decode_input, encode_input

EVENT_ROW = "e"
_dumps = json.JSONEncoder(separators=(",", ":")).encode


def line(seq: int, ts: float, kind: str, payload, encoder) -> str:
    """One input's line (`encoder`: an EventEncoder, which caches the pieces events share).
    An event with a value a row cannot hold (nothing the decoder makes) is written as its
    JSON object instead."""
    if kind == "event":
        try:
            return "[%s,%s,\"e\",%s]" % (seq, repr(float(ts)), encoder.encode_row(payload))
        except (TypeError, ValueError):
            text = encoder.encode(payload, exact_ts=True)
    else:
        text = _dumps(encode_input(kind, payload))
    return "[%s,%s,%s,%s]" % (seq, repr(float(ts)), _dumps(kind), text)


def change_block(records) -> bytes:
    """A writer batch of change records (version, op, entity, ident) as one zlib'd JSON list."""
    return zlib.compress(_dumps(records).encode("utf-8"), 1)


def change_records(db, since_ts: float = 0.0):
    """(version, ts, op, entity, ident) of every change stored at or after since_ts, oldest first:
    the change blocks, and the one-row-per-change table older files hold."""
    for row in db.execute("SELECT version, ts, op, entity, ident FROM changes WHERE ts >= ? ORDER BY ts, rowid",
                          (since_ts,)):
        yield tuple(row)
    for ts, data in db.execute("SELECT ts, data FROM change_blocks WHERE ts >= ? ORDER BY ts, first_version",
                               (since_ts,)):
        for version, op, entity, ident in json.loads(zlib.decompress(data)):
            yield version, ts, op, entity, ident


def lines(blocks):
    """(seq, ts, kind, data) of every input in the blocks (rows of one `data` column), in order."""
    for (data,) in blocks:
        for text in zlib.decompress(data).split(b"\n"):
            seq, ts, kind, data = json.loads(text)
            if kind == EVENT_ROW:
                kind, data = "event", encode_input("event", Event.from_row(data))
            yield seq, ts, kind, data


def inputs_between(blocks, after_seq: int, until: float):
    """(kind, payload) of the inputs after `after_seq` up to time `until`, decoded for replay;
    `blocks` are the blocks' data, in sequence order."""
    loads = json.loads
    from_row = Event.from_row
    for data in blocks:
        # Text, not bytes: json.loads would otherwise sniff the encoding of every line.
        for text in zlib.decompress(data).decode("utf-8").split("\n"):
            comma = text.index(",")
            if int(text[1:comma]) <= after_seq:
                continue
            if float(text[comma + 1:text.index(",", comma + 1)]) > until:
                return
            _seq, _ts, kind, payload = loads(text)
            if kind == EVENT_ROW:
                yield "event", from_row(payload)
            else:
                yield kind, decode_input(kind, payload)
