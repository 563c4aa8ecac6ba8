"""Which container an event belongs to, decided per event before its batch reaches the
graph (the collector's per-event subscriber in `nsgraph serve`).

Two kinds of events are tagged with the kernel's cgroup at the event:
- those that make namespaces (unshare, a namespace-creating clone), so that a container
  that is gone at once still owns what its runtime made; the targeted refresh is told of
  them too (host/nsrefresh.py);
- the exec of a setns caller or of its child: the command a join session runs.  The
  container it runs in names the session's container when several could (joins.py);
  only those execs are looked up, so a storm's other execs cost a dict check.
"""

from __future__ import annotations

from typing import Callable, Optional

from .events.kinds import EventKind

JOIN_EXEC_WINDOW = 10.0     # a setns caller's (or its child's) exec this soon is tagged with its container
JOINING_LIMIT = 256         # pending setns callers kept; beyond it the oldest go (amortised: see _prune)


class EventTagging:
    def __init__(self, tagger, refresh_of: Callable[[], Optional[object]] = lambda: None):
        self.tagger = tagger
        self.refresh_of = refresh_of        # the service's targeted refresh, or None while it is off
        self.joining = {}                   # pid -> ts: setns callers and their children, until they exec

    def __call__(self, event) -> None:
        kind = event.kind
        if kind == EventKind.UNSHARE or (kind == EventKind.CLONE and event.is_namespace_event):
            self.tagger.tag(event)
            refresh = self.refresh_of()
            if refresh is not None:
                refresh.note_event(event)
        elif kind == EventKind.SETNS:
            # A failed setns (EBADF, EINVAL, EPERM) joined nothing: no session to follow.
            # Storms of them are common (probes, benchmarks, sandboxes trying namespaces).
            if event.ret == 0:
                self._remember(event.pid, event.ts)
        elif self.joining:
            joining = self.joining
            if kind == EventKind.CLONE and event.pid in joining and event.child_pid:
                # The table's order is recency of use: a caller that forks moves to the
                # end (its own join time kept), so a fork storm prunes its children, not it.
                joining[event.pid] = joining.pop(event.pid)
                self._remember(event.child_pid, event.ts)
            elif kind == EventKind.EXEC and joining.pop(event.pid, None) is not None:
                self.tagger.tag(event)
            elif kind == EventKind.EXIT:
                joining.pop(event.pid, None)        # ended without an exec: nothing to name

    def _remember(self, pid: int, ts: float) -> None:
        self.joining[pid] = ts
        if len(self.joining) > 2 * JOINING_LIMIT:
            self._prune(ts)

    def _prune(self, now: float) -> None:
        """Drop callers whose exec window has passed, then the least recently used beyond the limit.

        Runs only when the table has doubled past JOINING_LIMIT, and leaves at most
        JOINING_LIMIT entries, so its cost is amortised over the >= JOINING_LIMIT
        insertions between two runs (it used to scan the whole table on every event
        once over the limit: 62 % of the collector's time in a setns storm).
        """
        joining = self.joining
        live = [(pid, ts) for pid, ts in joining.items() if now - ts <= JOIN_EXEC_WINDOW]
        joining.clear()
        joining.update(live[-JOINING_LIMIT:])
