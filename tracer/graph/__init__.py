"""The namespace model: a graph of namespaces, processes, containers and join sessions.

  schema.py      the Graph JSON's TypedDicts (the contract with every reader) and the id format
  model.py       NamespaceGraph: the lock, apply/apply_batch/apply_ops, wiring, the public API
  entities.py    Namespace, Process, BadEvent
  nstable.py     the namespace table: identity, generations, recycling, orphans, retention
  processes.py   processes, threads and the namespaces they hold (set_ns)
  handlers.py    EventKind -> handler: what each tracer event does (a new kind goes here)
  ops.py         every input that is not an event (snapshots, repairs, reads, containers, timers)
  changelog.py   versions and the change log (diff_since, changes_since)
  reconcile.py   snapshot -> ops: loading, and reconciling with /proc (pure functions)
  procreader.py  lazy /proc reads: live (procfs) or replayed (a recording's stash)
  joins.py       join sessions: setns bursts, their forks and the command they run
  views.py       the JSON views and lookups; dot.py Graphviz; checkpoint.py export/restore;
                 invariants.py the checks tests and the debug endpoint run
"""

from .entities import BadEvent
from .model import NamespaceGraph
from .procreader import LiveProcReader, ReplayProcReader

__all__ = ["BadEvent", "LiveProcReader", "NamespaceGraph", "ReplayProcReader"]
