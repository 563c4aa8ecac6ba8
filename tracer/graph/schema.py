"""The Graph JSON: the central contract between the model and everything that reads it.

`NamespaceGraph.to_json()` returns a `GraphJSON`, `diff_since()` a `GraphDiff`,
the lookups the `*Detail` shapes; the web API serves them as they are, the
browser and `nsgraph snapshot --json` read them, checkpoints and the fleet carry
them.  These TypedDicts are the one place the shapes are written down:
docs/ARCHITECTURE.md points here, and tests/unit checks real output against
them (`check_shape`), so a key that is added, renamed or dropped fails a test
instead of a page.

Ids: a namespace id is "type:dev:inode:generation" (`namespace_id()`); a
process is keyed by its host pid; a container by its engine id; a join by a
number.  Times are seconds since the epoch (float).
"""

from __future__ import annotations

from typing import Dict, List, Literal, Optional, TypedDict, Union

ChangeOp = Literal["add", "update", "remove"]
Entity = Literal["namespace", "process", "container", "join"]


class Creator(TypedDict, total=False):
    pid: int
    tid: int
    comm: str
    syscall: str            # clone, clone3, unshare (the call that made it)
    flags: List[str]        # CLONE_NEW* names as decoded
    ts: float
    child_pid: int          # clone only
    container: str          # the creating task's container (name, else short id), when it was in one
    container_id: str       # that container's engine id: the namespace's owner


class NamespaceJSON(TypedDict):
    id: str                 # "type:dev:inode:generation"
    type: str               # tracer.nstypes vocabulary
    inode: int
    dev: int
    generation: int
    ns_id: Optional[int]    # the kernel's 64-bit id (Linux 6.18+), else None
    alive: bool
    created: Optional[float]
    ended: Optional[float]
    creator: Optional[Creator]
    pids: List[int]         # host pids of the member processes
    tids: List[int]         # threads that are members on their own (unshare/setns in one thread)
    container: Optional[str]      # owning container's display name (the container whose runtime made it)
    container_id: Optional[str]   # owning container's engine id
    sharers: List[str]            # other member containers' display names, sorted
    sharer_ids: List[str]         # their engine ids, in the same order
    owner: Optional[int]          # inode of the owning user namespace
    owner_id: Optional[str]
    parent: Optional[int]         # pid and user namespaces
    parent_id: Optional[str]
    owner_uid: Optional[int]
    uid_map: Optional[str]
    gid_map: Optional[str]
    pinned: List[str]             # nsfs bind mounts (ip netns add)
    holders: List[int]            # pids holding it open by fd
    pending_end: bool             # no reference left; the next /proc read confirms its end
    repaired: bool                # found by a /proc repair, not by an event


class _ProcessBase(TypedDict):
    pid: int
    ppid: int
    comm: str
    cmdline: str
    uid: int
    ns: Dict[str, str]            # slot -> namespace id
    container: Optional[str]
    container_id: Optional[str]
    repaired: bool


class ProcessJSON(_ProcessBase, total=False):
    threads: Dict[str, Dict[str, str]]   # tid -> slot -> namespace id, for threads with namespaces of their own
    zombie: bool                  # present (true) for an exited, unreaped process: a member of its pid
                                  # and user namespaces only, as /proc shows it and lsns counts it


class _ContainerBase(TypedDict):
    id: str
    name: Optional[str]
    image: Optional[str]
    runtime: str
    pid: Optional[int]
    labels: Dict[str, str]
    state: Optional[str]
    pod_uid: Optional[str]
    source: Optional[str]


class ContainerJSON(_ContainerBase, total=False):
    shares: Dict[str, str]        # type -> id of the container whose namespace it joined (container:X modes)


class JoinJSON(TypedDict):
    id: int
    pid: int
    tid: int
    comm: str
    tool: str
    container: Optional[str]
    container_id: Optional[str]
    types: List[str]
    changed: List[str]            # the types whose namespace actually changed (nsenter -a joins all)
    target: Dict[str, str]        # type -> namespace id joined
    command: Optional[str]
    command_source: Optional[str]
    exec_pid: Optional[int]
    start: float
    end: Optional[float]
    open: bool
    # None for a join; else why it is a container engine's own switch ("engine": dockerd,
    # containerd, podman...; "container start": a runtime joining while it makes a
    # container).  Left out of GraphJSON.joins and diffs unless asked (?housekeeping=1).
    housekeeping: Optional[str]
    summary: str


class Counters(TypedDict, total=False):
    events: int
    lost: int
    repaired: int
    rejected: int                 # malformed inputs (BadEvent), nothing of them applied
    internal_errors: int          # bugs in the model (logged with a traceback); the graph was repaired
    discovered: int
    failed_calls: int
    reconciles: int
    settled: int
    namespaces_alive: int
    namespaces_by_type: Dict[str, int]
    namespaces_ended_kept: int
    processes: int
    orphans: int
    joins: int                    # join sessions kept, housekeeping ones included
    housekeeping_joins: int       # of them, the container engines' own switches
    replay_skipped_lines: int     # a replayed recording: lines that could not be read


class GraphJSON(TypedDict):
    version: int
    time: float
    node: str
    host_ns: Dict[str, str]       # slot -> namespace id of the host (pid 1)
    namespaces: List[NamespaceJSON]
    processes: List[ProcessJSON]
    containers: List[ContainerJSON]
    joins: List[JoinJSON]
    counters: Counters


class Change(TypedDict):
    op: ChangeOp
    entity: Entity
    id: Union[str, int]
    data: Union[NamespaceJSON, ProcessJSON, ContainerJSON, JoinJSON, None]   # None for "remove"


class GraphDiff(TypedDict):
    version: int
    since: int
    changes: List[Change]


class NamespaceDetail(NamespaceJSON):
    processes: List[ProcessJSON]


class ContainerDetail(TypedDict):
    container: ContainerJSON
    processes: List[ProcessJSON]
    namespaces: List[NamespaceJSON]       # the ones it owns
    shared: List[NamespaceJSON]           # other containers' namespaces it is a member of


def namespace_id(ns_type: str, dev: int, inode: int, generation: int) -> str:
    """The one id format of a namespace."""
    return "%s:%d:%d:%d" % (ns_type, dev, inode, generation)


def check_shape(value, shape, path: str = "$") -> List[str]:
    """Where `value` departs from the TypedDict (or typing form) `shape`: a list of
    "path: problem" strings, empty when it fits.  For tests and for readers of
    untrusted copies (checkpoints, fleet streams); it checks keys and JSON types,
    not meaning."""
    import typing
    problems: List[str] = []
    origin = typing.get_origin(shape)
    if shape is typing.Any:
        return problems
    if origin is Union:
        for option in typing.get_args(shape):
            if not check_shape(value, option, path):
                return problems
        return ["%s: %s fits none of %s" % (path, _brief(value), shape)]
    if origin is Literal:
        if value not in typing.get_args(shape):
            problems.append("%s: %s is not one of %s" % (path, _brief(value), typing.get_args(shape)))
        return problems
    if shape is type(None):
        return [] if value is None else ["%s: expected null, got %s" % (path, _brief(value))]
    if isinstance(shape, type) and issubclass(shape, dict) and hasattr(shape, "__annotations__"):
        if not isinstance(value, dict):
            return ["%s: expected an object, got %s" % (path, type(value).__name__)]
        hints = typing.get_type_hints(shape)
        for key in sorted(getattr(shape, "__required_keys__", frozenset())):
            if key not in value:
                problems.append("%s: missing key %r" % (path, key))
        for key, item in value.items():
            if key not in hints:
                problems.append("%s: unexpected key %r" % (path, key))
            else:
                problems.extend(check_shape(item, hints[key], "%s.%s" % (path, key)))
        return problems
    if origin in (list, List):
        if not isinstance(value, list):
            return ["%s: expected a list, got %s" % (path, type(value).__name__)]
        (item_shape,) = typing.get_args(shape) or (typing.Any,)
        for i, item in enumerate(value):
            problems.extend(check_shape(item, item_shape, "%s[%d]" % (path, i)))
        return problems
    if origin in (dict, Dict):
        if not isinstance(value, dict):
            return ["%s: expected an object, got %s" % (path, type(value).__name__)]
        key_shape, item_shape = typing.get_args(shape) or (typing.Any, typing.Any)
        for key, item in value.items():
            problems.extend(check_shape(key, key_shape, "%s{%r}" % (path, key)))
            problems.extend(check_shape(item, item_shape, "%s.%s" % (path, key)))
        return problems
    if shape is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif shape is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, shape)
    if not ok:
        problems.append("%s: expected %s, got %s" % (path, getattr(shape, "__name__", shape), _brief(value)))
    return problems


def _brief(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
