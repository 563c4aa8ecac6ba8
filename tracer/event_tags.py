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
JOINING_LIMIT = 256         # pending setns callers before the stale ones are dropped


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
            self.joining[event.pid] = event.ts
        elif self.joining:
            joining = self.joining
            if kind == EventKind.CLONE and event.pid in joining and event.child_pid:
                joining[event.child_pid] = event.ts
            elif kind == EventKind.EXEC and joining.pop(event.pid, None) is not None:
                self.tagger.tag(event)
            if len(joining) > JOINING_LIMIT:
                for pid in [p for p, ts in joining.items() if event.ts - ts > JOIN_EXEC_WINDOW]:
                    del joining[pid]
