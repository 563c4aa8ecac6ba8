"""The kinds of event the probes report (NSG_KIND_* in ebpf/nsgraph.h).

EventKind members are strings: they compare, hash, format and serialise (JSON,
SQLite, recordings) exactly as the plain names "clone", "unshare"... do, so code
and files that hold the names keep working, and new code can say EventKind.SETNS.
"""

from __future__ import annotations

import enum


class EventKind(str, enum.Enum):
    CLONE = "clone"
    UNSHARE = "unshare"
    SETNS = "setns"
    EXEC = "exec"
    EXIT = "exit"

    # Behave as the plain string everywhere: Enum's own __str__/__format__ give
    # "EventKind.CLONE", and a hash other than the string's would make dicts keyed
    # by "clone" miss EventKind.CLONE.
    __str__ = str.__str__
    __format__ = str.__format__
    __hash__ = str.__hash__


# Kinds that say something about namespaces (clone only with CLONE_NEW* flags; see Event).
NAMESPACE_KINDS = frozenset({EventKind.CLONE, EventKind.UNSHARE, EventKind.SETNS})
# Kinds of the process lifecycle (`nsgraph trace --procs`).
PROCESS_KINDS = frozenset({EventKind.EXEC, EventKind.EXIT})
