"""Unit tests of the /proc and nsfs readers that need no root.

Fake proc roots (directory trees in tmp dirs) carry the odd entries a real
/proc can show mid-race or a foreign one may hold: non-numeric names, a pid
whose ns directory is gone, garbage link targets, unparsable stat files.  They
must be skipped and counted, never raised.  Where the real /proc can answer
without root (our own process), it is the ground truth.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter

import pytest
from hypothesis import given, settings, strategies as st

from tracer import nstypes
from tracer.host import nsfs, pins, procfs
from tracer.host.snapshot import take_snapshot

HOST_INODES = {t: 4026531830 + i for i, t in enumerate(("mnt", "pid", "net", "uts", "ipc", "user", "cgroup", "time"))}


def stat_line(pid, comm="sleep", state="S", ppid=1, start=4242):
    # 52 fields as the kernel writes them; field 22 is start time.
    rest = [state, str(ppid)] + ["0"] * 17 + [str(start)] + ["0"] * 30
    return ("%d (%s) %s\n" % (pid, comm, " ".join(rest))).encode()


def make_proc(root, pid, comm="sleep", ppid=1, state="S", links=None, cmdline=b"sleep\x00600\x00",
              cgroup=b"0::/user.slice\n", start=4242, stat=None):
    """One fake /proc/<pid>; links maps slot -> link target (None: no ns dir at all)."""
    d = root / str(pid)
    d.mkdir()
    (d / "stat").write_bytes(stat if stat is not None else stat_line(pid, comm, state, ppid, start))
    (d / "cmdline").write_bytes(cmdline)
    (d / "cgroup").write_bytes(cgroup)
    if links is not None:
        (d / "ns").mkdir()
        for slot, target in links.items():
            os.symlink(target, d / "ns" / slot)
    return d


def host_links(**override):
    links = {slot: "%s:[%d]" % (nstypes.SLOT_TYPE[slot], HOST_INODES[nstypes.SLOT_TYPE[slot]])
             for slot in nstypes.NS_SLOTS}
    links.update(override)
    return links


@pytest.fixture
def fake_root(tmp_path):
    root = tmp_path / "proc"
    root.mkdir()
    (root / "self").mkdir()
    (root / "sys").mkdir()
    (root / "meminfo").write_text("MemTotal: 1 kB\n")
    (root / "\u00b2").mkdir()                # isdigit() but not a pid
    make_proc(root, 10, links=host_links())
    make_proc(root, 11, comm="we ird) (x", links=host_links(net="net:[4026532000]"),
              cmdline=b"a b\x00\xff\xfe\x00--x=\x00")
    make_proc(root, 20, links=None)                               # ns dir gone: exited mid-read
    make_proc(root, 21, links=host_links(net="garbage"))          # not "type:[inode]"
    make_proc(root, 22, links=host_links(uts="ipc:[4026531834]"))  # type does not fit the slot
    make_proc(root, 23, links=host_links(), stat=b"23 (broken")   # unparsable stat
    make_proc(root, 24, links=host_links(net="net:[12x]"))        # digits are not digits
    make_proc(root, 25, state="Z", links={"pid": "pid:[%d]" % HOST_INODES["pid"],
                                          "user": "user:[%d]" % HOST_INODES["user"]})
    return root


def test_pids_lists_only_numeric_entries(fake_root):
    assert sorted(procfs.pids(str(fake_root))) == [10, 11, 20, 21, 22, 23, 24, 25]


def test_scan_fake_root_skips_and_counts(fake_root):
    errors = Counter()
    found = procfs.scan_processes(procfs.pids(str(fake_root)) + [99], str(fake_root),
                                  dev=7, slots=nstypes.NS_SLOTS, errors=errors)
    by_pid = {p.pid: p for p in found}
    assert sorted(by_pid) == [10, 11, 25]
    assert errors == Counter({"vanished": 2, "malformed": 4, "zombie": 1})

    p10 = by_pid[10]
    assert p10.ns == {slot: (7, HOST_INODES[nstypes.SLOT_TYPE[slot]]) for slot in nstypes.NS_SLOTS}
    assert (p10.ppid, p10.comm, p10.start_ticks, p10.state) == (1, "sleep", 4242, "S")
    assert p10.cmdline == ["sleep", "600"]
    assert p10.cgroup == "0::/user.slice"
    assert p10.uid == os.stat(fake_root / "10" / "stat").st_uid

    p11 = by_pid[11]
    assert p11.comm == "we ird) (x"                       # counted from the last ")"
    assert p11.cmdline == ["a b", "\ufffd\ufffd", "--x="]
    assert p11.ns["net"] == (7, 4026532000)

    assert by_pid[25].ns == {"pid": (7, HOST_INODES["pid"]), "user": (7, HOST_INODES["user"])}


def test_read_process_bad_input_never_raises(fake_root):
    root = str(fake_root)
    errors = Counter()
    for bad in ("x", "", None, -1, 0, "1.5", True, 20, 21, 23, 424242):
        assert procfs.read_process(bad, root, errors=errors) is None
    assert errors["not_pid"] == 7
    assert procfs.read_process("10", root).pid == 10


def test_take_snapshot_of_fake_root_never_raises(fake_root):
    snap = take_snapshot(str(fake_root))
    assert sorted(snap.processes) == [10, 11, 25]
    # The fake links point nowhere: each namespace is kept, without ioctl data.
    types = Counter(ref[0] for ref in snap.namespaces)
    assert types["net"] == 2 and types["user"] == 1
    assert snap.errors["ns_unreadable"] == len(snap.namespaces)
    assert snap.errors["malformed"] == 4
    for info in snap.namespaces.values():
        assert info.ns_id is None and info.owner_inode is None
    net = [ref for ref in snap.namespaces if ref[0] == "net" and ref[2] == 4026532000]
    assert len(net) == 1 and snap.members(net[0]) == [11]
    host_pid = [ref for ref in snap.namespaces if ref[0] == "pid"][0]
    assert snap.members(host_pid) == [10, 11, 25]
    assert snap.member_counts()[host_pid] == 3


def test_fd_holders_only_namespaces(tmp_path):
    root = tmp_path / "proc"
    fd_dir = root / "30" / "fd"
    fd_dir.mkdir(parents=True)
    for name, target in {"0": "/dev/null", "1": "pipe:[77]", "2": "socket:[78]",
                         "3": "net:[4026532111]", "4": "anon_inode:[eventfd]",
                         "5": "net:[abc]", "6": "uts:[4026532112]", "7": "bogus:[1]"}.items():
        os.symlink(target, fd_dir / name)
    (root / "31").mkdir()                    # no fd dir: exited
    errors = Counter()
    held = pins.find_fd_holders([30, 31, 32], str(root), errors)
    assert sorted((h.type, h.inode, h.pid, h.fd) for h in held) == [
        ("net", 4026532111, 30, 3), ("uts", 4026532112, 30, 6)]
    assert errors == Counter({"vanished": 2, "malformed": 1})


MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
45 44 0:4 net:[4026532178] /run/netns/a rw shared:3 - nsfs nsfs rw
46 44 0:4 net:[4026532179] /run/netns/with\\040space rw shared:3 - nsfs nsfs rw
47 44 0:4 mnt:[4026532180] /run/pinned\\134mnt rw - nsfs nsfs rw
48 44 0:4 garbage /run/x rw - nsfs nsfs rw
49 44 nsfs net:[1] /run/x rw - nsfs nsfs rw
50 44 0:4 user:[4026532181] /tmp/nsfs\\012name rw master:2 unbindable - nsfs nsfs rw
"""


def test_parse_nsfs_mounts():
    errors = Counter()
    got = pins.parse_nsfs_mounts(MOUNTINFO, errors)
    dev = os.makedev(0, 4)
    assert got == [("net", dev, 4026532178, "/run/netns/a"),
                   ("net", dev, 4026532179, "/run/netns/with space"),
                   ("mnt", dev, 4026532180, "/run/pinned\\mnt"),
                   ("user", dev, 4026532181, "/tmp/nsfs\nname")]
    assert errors["malformed"] == 2


def test_find_pins_names_foreign_mount_namespaces(tmp_path):
    root = tmp_path / "proc"
    for pid, text in ((40, MOUNTINFO), (41, MOUNTINFO.splitlines()[1] + "\n")):
        (root / str(pid)).mkdir(parents=True)
        (root / str(pid) / "mountinfo").write_text(text)
    own, other = ("mnt", 4, 1), ("mnt", 4, 2)
    found = pins.find_pins({own: [40], other: [99, 41]}, str(root), own)
    paths = sorted(p.path for p in found)
    assert paths == ["/run/netns/a", "/run/netns/with space", "/run/pinned\\mnt", "/tmp/nsfs\nname",
                     "mnt:[2]/run/netns/a"]
    foreign = [p for p in found if p.path.startswith("mnt:")][0]
    assert foreign.open_path == "%s/41/root/run/netns/a" % root


def test_parse_ns_link():
    assert procfs.parse_ns_link("net:[4026531840]") == ("net", 4026531840)
    assert procfs.parse_ns_link("pid:[1]") == ("pid", 1)
    for bad in ("", "net", "net:[]", "net:[12", ":[12]", "net:[-1]", "net:[1 2]", "/proc/self/ns/net"):
        assert procfs.parse_ns_link(bad) is None


def test_parse_stat_of_real_process():
    data = open("/proc/self/stat", "rb").read()
    comm, state, ppid, start, _threads = procfs.parse_stat(data)
    assert ppid == os.getppid()
    assert comm == open("/proc/self/comm").read().rstrip("\n")
    assert state == "R"
    assert start == int(data[data.rfind(b")") + 2:].split()[19])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_parse_stat_never_raises(data):
    got = procfs.parse_stat(data)
    assert got is None or isinstance(got[2], int)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_parse_ns_link_never_raises(text):
    got = procfs.parse_ns_link(text)
    assert got is None or (got[0] + ":[%d]" % got[1]) == text


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60), max_size=8))
def test_parse_nsfs_mounts_never_raises(lines):
    errors = Counter()
    for entry in pins.parse_nsfs_mounts("\n".join(lines), errors):
        assert entry[0] in nstypes.MEMBER_TYPES


def test_read_own_process_matches_proc():
    me = procfs.read_process(os.getpid())
    dev = os.stat("/proc/self/ns/net").st_dev
    for slot in procfs.available_slots():
        target = os.readlink("/proc/self/ns/" + slot)
        assert me.ns[slot] == (dev, int(target.split("[")[1].rstrip("]")))
        assert os.stat("/proc/self/ns/" + slot).st_ino == me.ns[slot][1]
    assert me.cmdline == [a.decode() for a in open("/proc/self/cmdline", "rb").read().split(b"\0")[:-1]]
    assert me.ppid == os.getppid()
    assert me.uid == os.geteuid()
    assert me.cgroup == open("/proc/self/cgroup").read().strip()


def test_exited_process_is_vanished_not_raised():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()                             # reaped: its pid dir is gone
    errors = Counter()
    assert procfs.read_process(child.pid, errors=errors) is None
    assert errors == Counter({"vanished": 1})


def test_zombie_keeps_pid_and_user_like_lsns():
    child = subprocess.Popen(["true"])
    deadline = time.time() + 10
    while open("/proc/%d/stat" % child.pid).read().split(") ")[1][0] != "Z":
        assert time.time() < deadline
        time.sleep(0.01)
    try:
        errors = Counter()
        zombie = procfs.read_process(child.pid, errors=errors)
        readable = {slot for slot in procfs.available_slots()
                    if os.path.lexists("/proc/%d/ns/%s" % (child.pid, slot))
                    and _readlink_ok("/proc/%d/ns/%s" % (child.pid, slot))}
        assert zombie.state == "Z"
        assert set(zombie.ns) == readable and "pid" in readable and "net" not in readable
        assert errors == Counter({"zombie": 1})
    finally:
        child.wait()


def _readlink_ok(path):
    try:
        os.readlink(path)
        return True
    except OSError:
        return False


def test_ioctl_numbers_match_kernel_header():
    header = "/usr/include/linux/nsfs.h"
    if not os.path.exists(header):
        pytest.skip("no linux/nsfs.h (linux-libc-dev) to compare with")
    text = open(header).read()
    nsio = int(re.search(r"#define\s+NSIO\s+(0x[0-9a-fA-F]+)", text).group(1), 16)
    assert nsio == nsfs.NSIO
    for name in ("NS_GET_USERNS", "NS_GET_PARENT", "NS_GET_NSTYPE", "NS_GET_OWNER_UID"):
        nr = int(re.search(r"#define\s+%s\s+_IO\(NSIO,\s*(0x[0-9a-fA-F]+)\)" % name, text).group(1), 16)
        assert getattr(nsfs, name) == (nsio << 8) | nr


def kernel_at_least(major, minor):
    return tuple(int(x) for x in re.findall(r"\d+", os.uname().release)[:2]) >= (major, minor)


def test_nsfs_on_own_namespaces():
    """No root needed for our own ns files; answers checked against stat and the type names."""
    for slot in procfs.available_slots():
        with open("/proc/self/ns/" + slot, "rb") as handle:
            fd = handle.fileno()
            st_ = os.fstat(fd)
            meta = nsfs.describe(fd)
            assert meta.type == nstypes.SLOT_TYPE[slot]
            assert (meta.dev, meta.inode) == (st_.st_dev, st_.st_ino)
            if meta.type != "user":
                assert meta.owner == (st_.st_dev, os.stat("/proc/self/ns/user").st_ino)
    with open("/proc/self/ns/user", "rb") as a, open("/proc/self/ns/net", "rb") as b:
        id_user, id_net = nsfs.ns_id(a.fileno()), nsfs.ns_id(b.fileno())
        if kernel_at_least(6, 18):        # NS_GET_ID arrived in 6.18
            assert id_user is not None and id_net is not None and id_user != id_net
        with open("/proc/self/ns/user", "rb") as again:
            assert nsfs.ns_id(again.fileno()) == id_user


def test_forked_helpers_give_the_same_snapshot(fake_root):
    one = take_snapshot(str(fake_root), workers=1)
    for workers in (2, 3):
        split = take_snapshot(str(fake_root), workers=workers)
        assert split.processes == one.processes
        assert split.namespaces == one.namespaces
        assert split.errors == one.errors
        assert "helper_failed" not in split.errors


def test_find_pins_reads_a_member_that_is_not_chrooted(tmp_path):
    """A chrooted member's mountinfo lacks the host's /run/netns pins: another member is read."""
    root = tmp_path / "proc"
    chroot_dir = tmp_path / "build-root"
    chroot_dir.mkdir()
    for pid, text, member_root in ((50, "", str(chroot_dir)), (51, MOUNTINFO, "/")):
        (root / str(pid)).mkdir(parents=True)
        (root / str(pid) / "mountinfo").write_text(text)
        os.symlink(member_root, root / str(pid) / "root")
    own = ("mnt", 4, 1)
    assert pins.readers_first([50, 51], str(root)) == [51, 50]
    found = pins.find_pins({own: [50, 51]}, str(root), own, tries=1)
    assert "/run/netns/a" in {p.path for p in found}
    # Only chrooted members: their own view is still read.
    assert pins.readers_first([50, 99], str(root)) == [99, 50]
