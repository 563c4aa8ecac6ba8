"""Which container a cgroup path names: runtimes, parsing /proc/<pid>/cgroup, the cgroup v2 mount.

Attribution first comes from /proc/<pid>/cgroup alone, so it works with Docker
stopped, for runtimes nsgraph has no API for (containerd/CRI, CRI-O, Podman,
systemd-nspawn, LXC), and for recorded data.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass
from typing import Optional

DOCKER = "docker"
CONTAINERD = "containerd"
CRIO = "cri-o"
CRI = "cri"                   # a Kubernetes container whose runtime the path does not tell
PODMAN = "podman"
NSPAWN = "systemd-nspawn"
VM = "libvirt-qemu"           # machined also registers VMs (machine-qemu\x2dN\x2dNAME.scope)
LXC = "lxc"
UNKNOWN = "unknown"           # a 64-hex cgroup directory of no known layout (custom cgroup parent)

# Larger inputs are not cgroup files (paths are bounded by PATH_MAX per controller).
MAX_INPUT = 256 * 1024

_HEX64 = r"[0-9a-f]{64}"
_SCOPE_PATTERNS = (
    # (regex over one path component, runtime); conmon scopes are deliberately
    # absent: the monitor process is not in the container.
    (re.compile(r"docker-(%s)\.scope" % _HEX64), DOCKER),
    (re.compile(r"cri-containerd-(%s)\.scope" % _HEX64), CONTAINERD),
    (re.compile(r"crio-(%s)\.scope" % _HEX64), CRIO),
    (re.compile(r"libpod-(%s)(?:\.scope)?" % _HEX64), PODMAN),
    (re.compile(r"nerdctl-(%s)\.scope" % _HEX64), CONTAINERD),
)
BARE_ID = re.compile(_HEX64)
_NSPAWN = re.compile(r"machine-(.+)\.scope")
_LXC = re.compile(r"lxc\.payload\.(.+)")
_POD_UID = r"[0-9a-fA-F][0-9a-fA-F_-]{7,63}"
_K8S_POD_CGROUPFS = re.compile(r"pod(%s)" % _POD_UID)
_K8S_POD_SYSTEMD = re.compile(r"kubepods(?:-[a-z]+)?-pod(%s)\.slice" % _POD_UID)
_PODMAN_POD = re.compile(r"machine-libpod_pod_([0-9a-f]{64})\.slice")
_SYSTEMD_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")
_CGROUP_LINE = re.compile(r"^(\d+):([^:]*):(.*)$")
# /proc/self/mountinfo writes a space, tab, newline or backslash in a path as \040, \011, \012, \134.
_MOUNTINFO_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class ContainerRef:
    """What a cgroup path alone tells about a container."""
    runtime: str
    id: str                               # 64-hex id, or the machine name for nspawn/LXC
    name_hint: Optional[str] = None       # a name when the path carries one (nspawn, LXC)
    pod_uid: Optional[str] = None         # Kubernetes pod uid (dashed) or Podman pod id
    outer: tuple = ()                     # enclosing containers (outermost first) for nested paths

    @property
    def short_id(self) -> str:
        return self.id[:12] if BARE_ID.fullmatch(self.id) else self.id


def systemd_unescape(name: str) -> str:
    """Undo systemd unit-name escaping (`\\x2d` -> `-`)."""
    return _SYSTEMD_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), name)


def parse_cgroup_path(path: str) -> Optional[ContainerRef]:
    """The innermost container named by one cgroup path, or None."""
    if not isinstance(path, str) or not path.startswith("/") or len(path) > MAX_INPUT:
        return None
    return _parse_path(path)


# Processes share few distinct cgroup paths, so repeated look-ups are dictionary hits.
@functools.lru_cache(maxsize=4096)
def _parse_path(path: str) -> Optional[ContainerRef]:
    if path.endswith(" (deleted)"):
        path = path[: -len(" (deleted)")]
    found: list[ContainerRef] = []
    pod_uid = None
    in_kubepods = False
    prev = ""
    for comp in path.split("/"):
        if not comp:
            continue
        ref = None
        if comp.startswith("kubepods"):
            in_kubepods = True
            m = _K8S_POD_SYSTEMD.fullmatch(comp)
            if m:
                pod_uid = m.group(1).replace("_", "-").lower()
        elif in_kubepods and _K8S_POD_CGROUPFS.fullmatch(comp):
            pod_uid = comp[3:].lower()
        elif _PODMAN_POD.fullmatch(comp):
            pod_uid = comp[len("machine-libpod_pod_"):-len(".slice")]
        else:
            for rx, runtime in _SCOPE_PATTERNS:
                m = rx.fullmatch(comp)
                if m:
                    ref = ContainerRef(runtime, m.group(1), pod_uid=pod_uid)
                    break
            else:
                if BARE_ID.fullmatch(comp):
                    if prev == "docker":
                        runtime = DOCKER
                    elif in_kubepods and pod_uid:
                        runtime = CRI
                    else:
                        runtime = UNKNOWN
                    ref = ContainerRef(runtime, comp, pod_uid=pod_uid)
                elif _NSPAWN.fullmatch(comp):
                    # systemd-machined scopes: nspawn containers (and VMs registered the same way).
                    name = systemd_unescape(comp[len("machine-"):-len(".scope")])
                    if name and "/" not in name and name.isprintable():
                        ref = ContainerRef(VM if name.startswith("qemu-") else NSPAWN, name,
                                           name_hint=name)
                elif _LXC.fullmatch(comp) and comp.isprintable():
                    name = comp[len("lxc.payload."):]
                    ref = ContainerRef(LXC, name, name_hint=name)
        if ref is not None:
            found.append(ref)
            pod_uid = None  # a pod context does not leak into containers nested inside
            in_kubepods = False
        prev = comp
    if not found:
        return None
    inner = found[-1]
    if len(found) > 1:
        inner = dataclasses.replace(inner, outer=tuple(found[:-1]))
    return inner


def parse_cgroup(text) -> Optional[ContainerRef]:
    """The container named by a /proc/<pid>/cgroup file, one of its lines, or a bare path.

    The unified (v2, "0::") line is preferred; on v1 or hybrid hosts where it
    names nothing, the v1 controller lines are tried (name=systemd first).
    Malformed input gives None, never an exception.
    """
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", "replace")
    if not isinstance(text, str) or not text or len(text) > MAX_INPUT:
        return None
    unified: list[str] = []
    systemd: list[str] = []
    others: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("/"):
            unified.append(line)
            continue
        m = _CGROUP_LINE.match(line)
        if not m:
            continue
        hier, controllers, path = m.groups()
        if hier == "0" and controllers == "":
            unified.append(path)
        elif controllers == "name=systemd":
            systemd.append(path)
        else:
            others.append(path)
    for path in unified + systemd + others:
        ref = parse_cgroup_path(path)
        if ref is not None:
            return ref
    return None


def read_cgroup(pid: int) -> Optional[str]:
    """/proc/<pid>/cgroup, or None when the process vanished or cannot be read."""
    try:
        with open("/proc/%d/cgroup" % int(pid), "rb") as f:
            return f.read(MAX_INPUT + 1).decode("utf-8", "replace")
    except (OSError, ValueError, TypeError):
        return None


def cgroup2_mount(mountinfo: str = "/proc/self/mountinfo") -> Optional[str]:
    """Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or .../unified on hybrid hosts)."""
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields = left.split(" ")
                if right.split(" ", 1)[0] == "cgroup2" and len(fields) > 4:
                    return _MOUNTINFO_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), fields[4])
    except OSError:
        return None
    return None
