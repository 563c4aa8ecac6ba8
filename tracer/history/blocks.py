"""Input blocks of the history database: one writer batch of graph inputs per row.

A block is zlib'd JSON lines, one input each: `[seq,ts,kind,data]` (data as
recording.encode_input writes it).  Reading for a rebuild decodes only what it
replays: every line starts with its sequence number and time, which are read
first, so the inputs before the checkpoint and after the time asked for are
skipped without being parsed.
"""

from __future__ import annotations

import json
import zlib

from .recording import decode_input


def lines(blocks):
    """(seq, ts, kind, data) of every input in the blocks (rows of one `data` column), in order."""
    for (data,) in blocks:
        for line in zlib.decompress(data).split(b"\n"):
            yield json.loads(line)


def inputs_between(blocks, after_seq: int, until: float):
    """(kind, payload) of the inputs after `after_seq` up to time `until`, decoded for replay;
    `blocks` are the blocks' data, in sequence order."""
    loads = json.loads
    for data in blocks:
        # Text, not bytes: json.loads would otherwise sniff the encoding of every line.
        for line in zlib.decompress(data).decode("utf-8").split("\n"):
            comma = line.index(",")
            if int(line[1:comma]) <= after_seq:
                continue
            if float(line[comma + 1:line.index(",", comma + 1)]) > until:
                return
            _seq, _ts, kind, payload = loads(line)
            yield kind, decode_input(kind, payload)
