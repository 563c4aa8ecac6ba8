"""Versions and the bounded change log behind `diff_since` and the history's `changes` table.

Every change to the model is one record `(version, op, entity, ident)`:
op is "add", "update" or "remove"; entity "namespace", "process", "container"
or "join"; ident the entity's id (schema.py).  All records made while one input
is applied (an event, one apply_ops call, one lazy /proc read) share one
version: `begin()` opens an input, its first record bumps the version, and
`finish()` says whether anything changed.  A batch of events is a batch of
inputs, so apply_batch gives the versions apply() would.

The records are plain tuples and the hot paths (a plain fork, exec, exit)
append them inline instead of calling `record` (see handlers.py): this runs for
every event.
"""

from __future__ import annotations

from collections import deque
from typing import List, Optional, Tuple

DEFAULT_CHANGELOG = 20000           # change records kept for diff_since

ChangeRecord = Tuple[int, str, str, object]     # (version, op, entity, ident)


class ChangeLog:
    __slots__ = ("version", "bumped", "records")

    def __init__(self, size: int = DEFAULT_CHANGELOG, version: int = 0):
        self.version = version
        self.bumped = False          # the current input has a version of its own already
        self.records = deque(maxlen=size)

    def begin(self) -> None:
        """A new input starts: its first change gets the next version."""
        self.bumped = False

    def finish(self) -> bool:
        """The input is done; True when it changed something (a new version)."""
        changed = self.bumped
        self.bumped = False
        return changed

    @property
    def next_version(self) -> int:
        """The version the current input's changes carry."""
        return self.version if self.bumped else self.version + 1

    def record(self, op: str, entity: str, ident) -> None:
        if not self.bumped:
            self.version += 1
            self.bumped = True
        self.records.append((self.version, op, entity, ident))

    def reaches(self, version: int) -> bool:
        """True when every change after `version` is still in the log."""
        if version > self.version or version < 0:
            return False
        records = self.records
        # A full log may have lost the first records of its oldest version.
        return not (version < self.version and len(records) == records.maxlen and records[0][0] > version)

    def since(self, version: int) -> List[ChangeRecord]:
        """The records after `version` that the log still holds, oldest first."""
        out = []
        for record in reversed(self.records):
            if record[0] <= version:
                break
            out.append(record)
        out.reverse()
        return out

    def net_since(self, version: int) -> Optional[List[Tuple[str, object, str]]]:
        """(entity, ident, op) of each entity changed after `version`, newest first, with
        its last op ("remove" wins over an earlier "add"); None when the log does not reach."""
        if not self.reaches(version):
            return None
        latest = {}
        for v, op, entity, ident in reversed(self.records):
            if v <= version:
                break
            key = (entity, ident)
            if key not in latest:
                latest[key] = op
        return [(entity, ident, op) for (entity, ident), op in latest.items()]
