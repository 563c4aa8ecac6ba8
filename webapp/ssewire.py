"""The Server-Sent Events wire format: one message as text (stream.py publishes them)."""

from __future__ import annotations

import json


def sse_message(kind: str, data, msg_id=None) -> str:
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"), default=str)
    out = []
    if msg_id is not None:
        out.append("id: %s\n" % msg_id)
    out.append("event: %s\n" % kind)
    # JSON never contains raw newlines, but a plain string might.
    for line in text.split("\n"):
        out.append("data: %s\n" % line)
    out.append("\n")
    return "".join(out)
