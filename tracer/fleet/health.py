"""A node's health, from its heartbeats and its replica: live, stale or offline since T.

  live     heartbeats on time, the replica in step with the node's stream
  stale    heartbeats late (missed > 1.5 intervals), the agent reports a tracing error,
           the replica saw a hole in the stream and waits for the next checkpoint, or the
           replica trails the node's reported position by more than 10 s of records
  offline  no heartbeat for `offline_after` (default 3 intervals, at least 6 s), or the
           agent said it stopped; `since` is the time of its last heartbeat
  unknown  nothing heard yet (a node found only through old data in the stream)

Times are the NATS servers' receive times (JetStream metadata), not the nodes' clocks,
so a node with a skewed clock is judged correctly.
"""

from __future__ import annotations

from typing import Optional


def assess(now: float, status: Optional[dict], received_at: Optional[float], replica_stats: Optional[dict],
           offline_after: Optional[float] = None) -> dict:
    """{"state", "since", "reason", "heartbeat_age_s", "losses"} for one node."""
    losses = losses_of(status, replica_stats)
    if status is None or received_at is None:
        return {"state": "unknown", "since": None, "reason": "no heartbeat received yet",
                "heartbeat_age_s": None, "losses": losses}
    interval = _float(status.get("interval"), 2.0)
    limit = offline_after if offline_after is not None else max(3 * interval, 6.0)
    age = max(0.0, now - received_at)
    out = {"heartbeat_age_s": round(age, 3), "losses": losses}
    if status.get("state") == "stopped":
        out.update(state="offline", since=received_at, reason="the agent stopped")
    elif age > limit:
        out.update(state="offline", since=received_at, reason="no heartbeat for %.0f s" % age)
    elif age > 1.5 * interval + 0.5:
        out.update(state="stale", since=received_at, reason="heartbeat %.1f s late" % (age - interval))
    elif status.get("state") == "starting":
        out.update(state="stale", since=received_at, reason="the agent is starting (%s)"
                   % (status.get("progress") or "compiling its probes"))
    elif status.get("state") == "error":
        out.update(state="stale", since=received_at,
                   reason="the agent cannot trace: %s" % (status.get("error") or "unknown error"))
    elif replica_stats is not None and replica_stats.get("gap_since") and not replica_stats.get("synced"):
        out.update(state="stale", since=replica_stats["gap_since"],
                   reason="missed %d records in the stream; waiting for the node's next checkpoint"
                   % replica_stats.get("missed", 0))
    elif replica_stats is not None and replica_stats.get("run") is None:
        out.update(state="stale", since=received_at, reason="waiting for the node's first checkpoint")
    elif replica_stats is not None and status.get("run") and status.get("run") != replica_stats.get("run"):
        out.update(state="stale", since=received_at,
                   reason="the agent restarted (run %s); waiting for its first checkpoint" % status.get("run"))
    elif _behind(now, status, replica_stats):
        out.update(state="stale", since=replica_stats.get("last_applied_at"),
                   reason="the dashboard is %d records behind the node (replaying)"
                   % (status["seq"] - replica_stats["seq"]))
    else:
        out.update(state="live", since=None, reason=None)
    return out


def _behind(now: float, status: dict, replica_stats: Optional[dict], grace_s: float = 10.0) -> bool:
    """The replica trails what the node reported having sent by more than grace_s of records."""
    if not replica_stats or not isinstance(status.get("seq"), int) or status.get("run") != replica_stats.get("run"):
        return False
    if status["seq"] <= replica_stats.get("seq", 0):
        return False
    last = replica_stats.get("last_record_ts") or replica_stats.get("checkpoint_ts") or now
    return now - last > grace_s


def losses_of(status: Optional[dict], replica_stats: Optional[dict]) -> dict:
    """Every count of something lost or refused on the way from the node's kernel to here."""
    status = status or {}
    kernel = status.get("kernel") or {}
    outbox = status.get("outbox") or {}
    publisher = status.get("publisher") or {}
    replica = replica_stats or {}
    return {
        "kernel_lost": _int(kernel.get("lost")),
        "agent_dropped": _int(outbox.get("dropped_records")) + _int(status.get("journal_dropped")),
        "publish_refused": _int(publisher.get("refused")),
        "stream_missed": _int(replica.get("missed")),
        "bad_messages": _int(replica.get("bad_messages")),
    }


def _float(value, default: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return default
    return value if value > 0 else default


def _int(value) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0
