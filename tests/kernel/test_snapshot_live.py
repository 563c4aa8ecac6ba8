"""take_snapshot() on the real system, as root, against util-linux lsns and the kernel.

Ground truth comes from lsns, from stat() of /proc/<pid>/ns/* and pin files,
and from nsfs ioctls issued here directly with fcntl (not through tracer.host.nsfs).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import struct
import subprocess
import uuid

import pytest

from tests.conftest import require, inode, wait_for
from tracer import nstypes
from tracer.host.snapshot import take_snapshot

# Not in the VM leg (it never ran there; the VM leg runs the tracer tests).
pytestmark = pytest.mark.host_only

NS_GET_USERNS = 0xB701
NS_GET_PARENT = 0xB702
NS_GET_OWNER_UID = 0xB704
NS_GET_ID = 0x8008B70D
NSFS_DEV = os.stat("/proc/self/ns/net").st_dev


def related_inode(path, request):
    """The inode an NS_GET_* ioctl returns for the namespace at path; None on EPERM."""
    with open(path, "rb") as handle:
        try:
            fd = fcntl.ioctl(handle.fileno(), request)
        except OSError as exc:
            assert exc.errno == errno.EPERM
            return None
        try:
            return os.fstat(fd).st_ino
        finally:
            os.close(fd)


def children_of(pid):
    with open("/proc/%d/task/%d/children" % (pid, pid)) as handle:
        return [int(x) for x in handle.read().split()]


@pytest.fixture
def spawned():
    """Processes started by a test; killed and reaped at the end whatever happens."""
    procs = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def lsns_json(*columns):
    require(shutil.which("lsns") is not None, "util-linux lsns is not installed")
    out = subprocess.run(["lsns", "--json", "--output", ",".join(columns)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)["namespaces"]


def member_sets(snap):
    """NsRef -> member pids, from the processes' membership slots (not *_for_children)."""
    out = {}
    for proc in snap.processes.values():
        for slot in nstypes.MEMBER_TYPES:
            if slot in proc.ns:
                out.setdefault((slot,) + proc.ns[slot], set()).add(proc.pid)
    return out


def compare_with_lsns():
    """Disagreements between lsns and snapshots taken just before and after it.

    Processes start and exit while lsns runs, so a namespace's process count
    from lsns must lie between the members present in both snapshots and those
    present in either; for a namespace nobody entered or left that is exact
    equality.  A namespace lsns lists but neither snapshot has is accepted only
    if its lsns process has since exited or left it.
    """
    before = take_snapshot()
    rows = lsns_json("NS", "TYPE", "NPROCS", "PID", "PATH")
    after = take_snapshot()
    problems = []
    was, now = member_sets(before), member_sets(after)
    ours = {(t, NSFS_DEV, inode("/proc/self/ns/" + t)) for t in nstypes.MEMBER_TYPES
            if os.path.exists("/proc/self/ns/" + t)}
    for row in rows:
        ns_type, ns_inode, nprocs, pid = row["type"], int(row["ns"]), int(row["nprocs"]), int(row["pid"])
        ref = (ns_type, NSFS_DEV, ns_inode)
        both = was.get(ref, set()) & now.get(ref, set())
        either = was.get(ref, set()) | now.get(ref, set())
        if not either:
            try:
                still_there = inode("/proc/%d/ns/%s" % (pid, ns_type)) == ns_inode
            except OSError:
                still_there = False
            if still_there:
                problems.append("%s (pid %d) missing from the snapshot" % (ref, pid))
            continue
        # lsns counts itself: it runs in our namespaces, between the two snapshots.
        lsns_itself = 1 if ref in ours else 0
        if not len(both) + lsns_itself <= nprocs <= len(either) + lsns_itself:
            problems.append("%s: lsns counts %d processes, snapshots %d..%d (+%d for lsns)"
                            % (ref, nprocs, len(both), len(either), lsns_itself))
        if pid not in either:
            problems.append("%s: lsns pid %d is not a member (%s...)" % (ref, pid, sorted(either)[:5]))
    listed = {(row["type"], int(row["ns"])) for row in rows}
    for ref in after.namespaces:
        if was.get(ref, set()) & now.get(ref, set()) and (ref[0], ref[2]) not in listed:
            problems.append("%s has steady members but lsns does not list it" % (ref,))
    return problems, rows


def test_snapshot_agrees_with_lsns(root, spawned):
    # Namespaces beyond the host's: a uts+ipc+net+mnt set, a user+pid set, a cgroup one.
    spawned.append(subprocess.Popen(["unshare", "--uts", "--ipc", "--net", "--mount", "sleep", "60"]))
    spawned.append(subprocess.Popen(["unshare", "--user", "--map-root-user", "--pid", "--fork",
                                     "sleep", "60"]))
    spawned.append(subprocess.Popen(["unshare", "--cgroup", "sleep", "60"]))
    wait_for(lambda: os.readlink("/proc/%d/ns/net" % spawned[0].pid) != os.readlink("/proc/self/ns/net"),
             "unshare --net")
    wait_for(lambda: children_of(spawned[1].pid), "unshare --fork child")
    wait_for(lambda: os.readlink("/proc/%d/ns/cgroup" % spawned[2].pid) != os.readlink("/proc/self/ns/cgroup"),
             "unshare --cgroup")

    for _ in range(3):                 # a namespace born and gone within lsns's run: try again
        problems, rows = compare_with_lsns()
        if not problems:
            break
    assert not problems, problems
    listed = {(row["type"], int(row["ns"])) for row in rows}
    for t in ("uts", "ipc", "net", "mnt"):
        assert (t, inode("/proc/%d/ns/%s" % (spawned[0].pid, t))) in listed
    assert ("pid", inode("/proc/%d/ns/pid" % children_of(spawned[1].pid)[0])) in listed
    assert ("cgroup", inode("/proc/%d/ns/cgroup" % spawned[2].pid)) in listed


def test_ip_netns_pin_without_processes(root):
    require(shutil.which("ip") is not None, "iproute2 `ip` is not installed")
    name = "nsgtest-snap-%s" % uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        path = "/run/netns/" + name
        st = os.stat(path)
        ref = ("net", st.st_dev, st.st_ino)
        snap = take_snapshot()
        assert ref in snap.namespaces, "pinned netns %s missing" % path
        info = snap.namespaces[ref]
        assert path in info.pinned
        assert snap.members(ref) == [] and info.holders == []
        assert info.owner_inode == inode("/proc/self/ns/user")
        assert info.owner_inode == related_inode(path, NS_GET_USERNS)
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=True)
    assert all(path not in info.pinned for info in take_snapshot(scan_fds=False).namespaces.values())


def test_namespace_held_only_by_fd(root, spawned):
    child = subprocess.Popen(["unshare", "--uts", "sleep", "60"])
    spawned.append(child)
    link = "/proc/%d/ns/uts" % child.pid
    wait_for(lambda: os.readlink(link) != os.readlink("/proc/self/ns/uts"), "unshare --uts")
    fd = os.open(link, os.O_RDONLY)
    try:
        ref = ("uts", os.fstat(fd).st_dev, os.fstat(fd).st_ino)
        child.kill()
        child.wait()
        snap = take_snapshot()
        assert ref in snap.namespaces, "uts namespace held by fd %d of pid %d missing" % (fd, os.getpid())
        info = snap.namespaces[ref]
        assert info.holders == [os.getpid()]
        assert snap.members(ref) == [] and info.pinned == []
        # Without the fd scan it cannot be found: the parameter really switches it off.
        assert ref not in take_snapshot(scan_fds=False).namespaces
        ns_id = info.ns_id
    finally:
        os.close(fd)
    # Its inode may be reused at once by a new namespace; ns_id (6.18+) is not.
    after = take_snapshot()
    if ns_id is not None:
        assert all(i.ns_id != ns_id for i in after.namespaces.values())
    elif ref in after.namespaces:
        assert os.getpid() not in after.namespaces[ref].holders


def test_user_and_pid_namespace_owner_and_parent(root, spawned):
    outer = subprocess.Popen(["unshare", "--user", "--map-root-user", "--pid", "--fork", "sleep", "60"])
    spawned.append(outer)
    inner = wait_for(lambda: children_of(outer.pid), "unshare --fork child")[0]
    base = "/proc/%d/ns/" % inner
    host_user, host_pid = inode("/proc/self/ns/user"), inode("/proc/self/ns/pid")
    user_ref, pid_ref = ("user", NSFS_DEV, inode(base + "user")), ("pid", NSFS_DEV, inode(base + "pid"))
    assert user_ref[2] != host_user and pid_ref[2] != host_pid

    snap = take_snapshot()
    user, pid = snap.namespaces[user_ref], snap.namespaces[pid_ref]
    # Ground truth from ioctls issued here.
    assert pid.parent_inode == related_inode(base + "pid", NS_GET_PARENT) == host_pid
    assert pid.owner_inode == related_inode(base + "pid", NS_GET_USERNS) == user_ref[2]
    assert user.parent_inode == related_inode(base + "user", NS_GET_PARENT) == host_user
    assert user.owner_inode == related_inode(base + "user", NS_GET_USERNS) == host_user
    with open(base + "user", "rb") as handle:
        buf = bytearray(4)
        fcntl.ioctl(handle.fileno(), NS_GET_OWNER_UID, buf, True)
        assert user.owner_uid == struct.unpack("=I", buf)[0] == os.geteuid()
        buf = bytearray(8)
        try:
            fcntl.ioctl(handle.fileno(), NS_GET_ID, buf, True)
            expected_id = struct.unpack("=Q", buf)[0]
        except OSError:
            expected_id = None
        assert user.ns_id == expected_id
    assert user.uid_map == open("/proc/%d/uid_map" % inner).read()
    assert user.uid_map.split() == ["0", str(os.geteuid()), "1"]
    assert user.gid_map == open("/proc/%d/gid_map" % inner).read()
    host = snap.namespaces[("pid", NSFS_DEV, host_pid)]
    assert host.parent_inode is None            # EPERM at the top is "no parent"

    # The `unshare` process itself is in the host pid namespace; its children go to the new one.
    outer_info = snap.processes[outer.pid]
    assert outer_info.ns["pid"] == (NSFS_DEV, host_pid)
    assert outer_info.ns["pid_for_children"] == (NSFS_DEV, inode("/proc/%d/ns/pid_for_children" % outer.pid))
    assert outer_info.ns["pid_for_children"] == (NSFS_DEV, pid_ref[2])
    assert snap.members(pid_ref) == [inner]

    rows = {(r["type"], int(r["ns"])): r for r in lsns_json("NS", "TYPE", "PNS", "ONS")}
    row = rows[("pid", pid_ref[2])]
    assert int(row["pns"]) == pid.parent_inode and int(row["ons"]) == pid.owner_inode
    row = rows[("user", user_ref[2])]
    assert int(row["pns"]) == user.parent_inode and int(row["ons"]) == user.owner_inode


def test_snapshot_during_process_churn_never_raises(root):
    """Processes exiting between listing /proc and reading their links (Tracee #1366)."""
    churn = subprocess.Popen(["sh", "-c", "while :; do /bin/true & /bin/true & wait; done"],
                             start_new_session=True)
    try:
        seen = set()
        for _ in range(15):
            snap = take_snapshot()
            seen.update(snap.errors)
            for proc in snap.processes.values():
                assert proc.ns, proc
                # A process is in at most one namespace of each type, and each is listed.
                for slot, (dev, ino) in proc.ns.items():
                    assert (slot.replace("_for_children", ""), dev, ino) in snap.namespaces
        assert churn.poll() is None
    finally:
        os.killpg(churn.pid, 9)
        churn.wait()
    # ns_unreadable: every member of a namespace exited before it could be opened (on a shared
    # machine, someone else's short-lived namespace): counted, as the snapshot promises.
    assert seen <= {"vanished", "permission", "zombie", "partial", "permission_detail", "changed",
                    "ns_unreadable"}, seen
