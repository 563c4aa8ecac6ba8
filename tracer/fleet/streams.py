"""The fleet's JetStream stream, and creating or updating it (`nsgraph fleet streams`).

  NSGRAPH   nsgraph.*.*: every node's events, checkpoints and heartbeats.  File storage,
            replicated (--replicas), kept --max-age / --max-bytes (the oldest messages go
            first), a duplicate window for Nats-Msg-Id resends, direct gets (the dashboard
            reads each node's last checkpoint and heartbeat with one request each).

Only the administrator's identity may create or change the stream; agents publish and
the dashboard reads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .subjects import PREFIX, STREAM

DEFAULT_MAX_AGE_S = 7 * 86400
DEFAULT_MAX_BYTES = 10 << 30
DEFAULT_MAX_MSG_BYTES = 8 << 20
DUPLICATE_WINDOW_S = 120.0


@dataclass
class Retention:
    max_age_s: float = DEFAULT_MAX_AGE_S
    max_bytes: int = DEFAULT_MAX_BYTES
    replicas: int = 1


def stream_config(retention: Retention):
    from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
    return StreamConfig(
        name=STREAM, description="nsgraph fleet: every node's journal records, checkpoints and heartbeats",
        subjects=["%s.*.*" % PREFIX], retention=RetentionPolicy.LIMITS, storage=StorageType.FILE,
        num_replicas=retention.replicas, max_age=retention.max_age_s, max_bytes=retention.max_bytes,
        discard=DiscardPolicy.OLD, max_msg_size=DEFAULT_MAX_MSG_BYTES, duplicate_window=DUPLICATE_WINDOW_S,
        allow_direct=True)


async def ensure_stream(js, retention: Retention) -> str:
    """Create the stream, or update its limits: "created", "updated" or "unchanged"."""
    from nats.js.errors import NotFoundError
    config = stream_config(retention)
    try:
        info = await js.stream_info(STREAM)
    except NotFoundError:
        await js.add_stream(config)
        return "created"
    current = info.config
    if (current.max_age, current.max_bytes, current.num_replicas) == \
            (config.max_age, config.max_bytes, config.num_replicas):
        return "unchanged"
    await js.update_stream(config)
    return "updated"


_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20,
          "mib": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tb": 1 << 40,
          "tib": 1 << 40}
_DURATIONS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_size(text: str) -> int:
    """'10G', '512MiB', '1000000' -> bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError("%r is not a size (examples: 500M, 10G, 1T)" % text)
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def parse_duration(text: str) -> float:
    """'7d', '12h', '90m', '3600' -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", str(text).lower())
    if not m:
        raise ValueError("%r is not a duration (examples: 90m, 12h, 7d, 2w)" % text)
    return float(m.group(1)) * _DURATIONS.get(m.group(2) or "s", 1)
