"""Retention of the history database: by age and by size, oldest first, always replayable.

History is cut at a checkpoint C: everything older than C (checkpoints, input
blocks, change-log blocks and older files' change rows, runs left empty) is
deleted, and C itself stays, so any time from C on still rebuilds exactly.  The size limit counts the pages in use;
freed pages go back to the file system (auto_vacuum=INCREMENTAL, set when the
file is created), so the file shrinks too.

Defaults (HistoryStore): 7 days and 400 MB.  Under a namespace storm (thousands of
events per second) about 500 MB of inputs arrive per hour, so the size limit is what
bites and the oldest history goes first; on a quiet host the 7 days do.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Optional

# Cut a little below the limit, so that pruning does not run at every checkpoint.
HEADROOM = 0.9


def used_bytes(db: sqlite3.Connection) -> int:
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    free = db.execute("PRAGMA freelist_count").fetchone()[0]
    return (pages - free) * page_size


def _cut_for_age(db, max_age_s: Optional[float], now: float) -> Optional[float]:
    """The newest checkpoint time at or before now - max_age_s (history before it may go)."""
    if not max_age_s:
        return None
    row = db.execute("SELECT max(ts) FROM checkpoints WHERE ts <= ?", (now - max_age_s,)).fetchone()
    return row[0]


def _cut_for_size(db, max_bytes: Optional[int]) -> Optional[float]:
    """The oldest checkpoint time such that dropping what precedes it frees enough bytes."""
    if not max_bytes:
        return None
    excess = used_bytes(db) - int(max_bytes * HEADROOM)
    if excess <= 0:
        return None
    # Bytes older than each checkpoint, accumulated oldest first (input and change blocks +
    # older checkpoints).
    stamps = [r[0] for r in db.execute("SELECT ts FROM checkpoints ORDER BY ts")]
    if len(stamps) < 2:
        return None                                  # nothing can go: keep the only checkpoint
    blocks = db.execute("SELECT last_ts, nbytes FROM input_blocks UNION ALL "
                        "SELECT ts, nbytes FROM change_blocks ORDER BY 1").fetchall()
    sizes = dict(db.execute("SELECT ts, nbytes FROM checkpoints").fetchall())
    freed, i, before = 0, 0, 0
    for n, ts in enumerate(stamps[1:], start=1):
        while i < len(blocks) and blocks[i][0] < ts:
            freed += blocks[i][1]
            i += 1
        before += sizes.get(stamps[n - 1], 0)
        if freed + before >= excess:
            return ts
    return stamps[-1]                                # keep only the newest checkpoint


def prune(db: sqlite3.Connection, *, max_bytes: Optional[int], max_age_s: Optional[float],
          keep_run: Optional[str] = None, now: Optional[float] = None) -> dict:
    """Delete history older than the later of the two cuts; {"blocks", "checkpoints", "bytes"}."""
    now = time.time() if now is None else now
    cuts = [c for c in (_cut_for_age(db, max_age_s, now), _cut_for_size(db, max_bytes)) if c is not None]
    if not cuts:
        return {"blocks": 0, "checkpoints": 0, "bytes": 0}
    cut = max(cuts)
    before = used_bytes(db)
    blocks = db.execute("DELETE FROM input_blocks WHERE last_ts < ?", (cut,)).rowcount
    checkpoints = db.execute("DELETE FROM checkpoints WHERE ts < ?", (cut,)).rowcount
    db.execute("DELETE FROM changes WHERE ts < ?", (cut,))
    db.execute("DELETE FROM change_blocks WHERE ts < ?", (cut,))
    db.execute("DELETE FROM runs WHERE run_id != ? AND run_id NOT IN (SELECT DISTINCT run_id FROM checkpoints)",
               (keep_run or "",))
    db.commit()
    db.execute("PRAGMA incremental_vacuum")
    db.commit()
    return {"blocks": blocks, "checkpoints": checkpoints, "bytes": max(0, before - used_bytes(db))}
