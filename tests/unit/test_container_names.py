"""Naming containers (the one id-prefix rule), attribution by cgroup id, and cgroup
edge cases, all without Docker: tracer/containers/{records,attribution,cgroups}.py.

Docker's own behaviour (by_id with the 12-character ids `docker ps` prints, names
after a rename) is checked against a real engine in tests/docker/test_containers_docker.py.
"""

from __future__ import annotations

import os

import pytest

from tracer.containers import cgroups as C
from tracer.containers import records
from tracer.containers.attribution import CgroupIds, EventContainers
from tracer.containers.records import MIN_ID_PREFIX, Container, find_container, matches_container, names_container
from tracer.events.event import Event
from tracer.events.kinds import EventKind

ID_A = "ee7cde410171c8b145152a7279659c1be3e43ca16fe1fa4fc03bdb64df1fa5b4"
ID_B = "ee7cd0000000c8b145152a7279659c1be3e43ca16fe1fa4fc03bdb64df1fa5b4"   # shares 5 characters with A
ID_C = "9ec39b91f3d70e1beff50a308f77067065ea6be0d91a3378375056cd4422cf3d"


def container(cid, name):
    return Container(id=cid, name=name, image=None, runtime=C.DOCKER)


APP, DB, OTHER = container(ID_A, "myapp"), container(ID_B, "db"), container(ID_C, ID_A[:12])


# -- the one rule --

@pytest.mark.parametrize("wanted,expected", [
    ("myapp", True), ("/myapp", True),              # docker inspect writes names with a leading "/"
    (ID_A, True), (ID_A[:12], True), (ID_A[:MIN_ID_PREFIX], True),
    (ID_A[:MIN_ID_PREFIX - 1], False),              # too short to be an id prefix
    ("myap", False), ("MYAPP", False), (ID_A.upper()[:12], False),
    (ID_A[1:13], False),                            # a prefix, not a substring
    ("", False), ("/", False),
])
def test_names_container(wanted, expected):
    assert names_container(wanted, "myapp", ID_A) is expected
    assert matches_container(APP, [wanted]) is expected


def test_names_container_with_missing_parts():
    assert not names_container("myapp", None, None)
    assert names_container(ID_A[:8], None, ID_A)          # an id-only lookup
    assert not names_container("myapp", None, ID_A)
    assert names_container("/myapp", "/myapp", None)      # either side may carry the "/"
    assert not matches_container(None, ["myapp"])
    assert matches_container(APP, ["nope", "myapp"]) and not matches_container(APP, [])


def test_find_container_prefers_a_name_then_a_full_id_then_a_unique_prefix():
    everyone = [APP, DB, OTHER]
    assert find_container("myapp", everyone) is APP
    assert find_container(ID_A, everyone) is APP
    # OTHER is *named* like APP's short id: the name wins, as with `docker inspect`
    assert find_container(ID_A[:12], everyone) is OTHER
    assert find_container(ID_A[:12], [APP, DB]) is APP
    # both ids start with these four characters: ambiguous, so nothing
    assert find_container(ID_A[:MIN_ID_PREFIX], everyone) is None
    assert find_container(ID_A[:6], everyone) is APP
    assert find_container(ID_C[:MIN_ID_PREFIX - 1], everyone) is None
    assert find_container("", everyone) is None and find_container("x", []) is None


def test_find_container_over_graph_json():
    """The graph and the web layer look up the Graph JSON's container objects with the same rule."""
    listed = [c.to_json() for c in (APP, DB)]
    key = lambda c: (c.get("name"), c["id"])  # noqa: E731
    assert find_container("db", listed, key=key)["id"] == ID_B
    assert find_container(ID_B[:6], listed, key=key)["name"] == "db"
    assert find_container(ID_B[:MIN_ID_PREFIX], listed, key=key) is None


# -- records --

def test_records_from_sparse_inspect_data():
    c = records.container_from_inspect({"Id": ID_C})
    assert (c.name, c.image, c.pid, c.state, c.labels) == (ID_C[:12], None, None, "unknown", {})
    c = records.container_from_inspect({"Id": ID_C, "Name": "/", "Config": None, "State": None})
    assert c.name == ID_C[:12] and c.labels == {}
    assert Container(id="web", name="web", image=None, runtime=C.NSPAWN).short_id == "web"


# -- cgroup paths: more edge cases --

@pytest.mark.parametrize("text,expected_id", [
    ("0::/docker/%s/" % ID_A, ID_A),                                        # trailing slash
    ("0::/docker/%s\r\n" % ID_A, ID_A),                                     # CRLF
    ("5:cpu:/docker/%s\n0::/docker/%s\n" % (ID_C, ID_A), ID_A),             # unified wins over v1
    ("5:cpu:/docker/%s\n1:name=systemd:/docker/%s\n0::/\n" % (ID_C, ID_A), ID_A),  # then name=systemd
    ("0::/docker/%s/docker/%s (deleted)" % (ID_C, ID_A), ID_A),
])
def test_which_line_and_component_decide(text, expected_id):
    assert C.parse_cgroup(text).id == expected_id


def test_pod_uids_are_normalised_to_lowercase_dashed():
    upper = "0::/kubepods/besteffort/pod74BA62DA-1A3D-11E7-BB11-080027CB0E22/" + ID_A
    assert C.parse_cgroup(upper).pod_uid == "74ba62da-1a3d-11e7-bb11-080027cb0e22"
    systemd = ("0::/kubepods.slice/kubepods-pod74BA62DA_1A3D_11E7_BB11_080027CB0E22.slice/"
               "cri-containerd-%s.scope" % ID_A)
    assert C.parse_cgroup(systemd).pod_uid == "74ba62da-1a3d-11e7-bb11-080027cb0e22"


def mountinfo(tmp_path, *lines):
    path = tmp_path / "mountinfo"
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


def test_cgroup2_mount_from_mountinfo(tmp_path):
    v1 = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu"
    tmpfs = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755"
    unified = "38 31 0:35 / /sys/fs/cgroup/unified rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate"
    pure = "26 23 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw"
    assert C.cgroup2_mount(mountinfo(tmp_path, tmpfs, v1, unified)) == "/sys/fs/cgroup/unified"
    assert C.cgroup2_mount(mountinfo(tmp_path, pure)) == "/sys/fs/cgroup"
    assert C.cgroup2_mount(mountinfo(tmp_path, tmpfs, v1)) is None                 # cgroup v1 only
    assert C.cgroup2_mount(str(tmp_path / "missing")) is None
    # a mount point with a space, as the kernel escapes it
    spaced = "40 23 0:40 / /mnt/my\\040cgroups rw - cgroup2 cgroup2 rw"
    assert C.cgroup2_mount(mountinfo(tmp_path, spaced)) == "/mnt/my cgroups"
    # lines too short to hold a mount point, and garbage, are passed over
    assert C.cgroup2_mount(mountinfo(tmp_path, "1 2 - cgroup2 cgroup2 rw", "\xff\xfe junk", pure)) == "/sys/fs/cgroup"


# -- attribution by cgroup id (the inode of the cgroup's directory) --

@pytest.fixture
def hierarchy(tmp_path):
    """A directory tree laid out like a cgroup v2 hierarchy (ids are the directories' inodes)."""
    root = tmp_path / "cgroup"
    (root / "system.slice").mkdir(parents=True)
    (root / "docker" / ID_A).mkdir(parents=True)
    return root


def test_cgroup_ids_map_directory_inodes_to_paths(hierarchy):
    ids = CgroupIds(root=str(hierarchy))
    assert ids.path(os.stat(hierarchy / "docker" / ID_A).st_ino) == "/docker/" + ID_A
    assert ids.path(os.stat(hierarchy).st_ino) == "/"
    assert ids.path(0) is None
    scans = ids.scans
    assert ids.path(os.stat(hierarchy / "system.slice").st_ino) == "/system.slice"
    assert ids.scans == scans, "a known id needs no rescan"


def test_a_new_cgroup_is_found_by_a_rescan(hierarchy):
    ids = CgroupIds(root=str(hierarchy), rescan_interval=0.0)
    ids.path(os.stat(hierarchy).st_ino)
    (hierarchy / "docker" / ID_C).mkdir()
    assert ids.path(os.stat(hierarchy / "docker" / ID_C).st_ino) == "/docker/" + ID_C


def test_unknown_ids_rescan_at_most_once_per_interval(hierarchy):
    ids = CgroupIds(root=str(hierarchy), rescan_interval=3600)
    ids.path(os.stat(hierarchy).st_ino)
    known_max = max(os.stat(p).st_ino for p in (hierarchy, hierarchy / "docker", hierarchy / "system.slice",
                                                hierarchy / "docker" / ID_A))
    scans = ids.scans
    for _ in range(5):
        assert ids.path(1) is None                  # older than the newest seen, and not there
    assert ids.scans == scans
    assert ids.path(known_max + 10 ** 9) is None    # newer than any seen: worth one rescan each time
    assert ids.scans == scans + 1


def test_the_kernels_record_names_a_cgroup_that_is_gone(hierarchy):
    gone = 2 ** 40 + 7
    ids = CgroupIds(root=str(hierarchy), kernel_lookup={gone: "/docker/" + ID_C}.get)
    assert ids.path(gone) == "/docker/" + ID_C
    assert ids.path(gone + 1) is None


def test_cgroup_ids_without_a_hierarchy():
    ids = CgroupIds(root="")
    assert ids.path(12345) is None


def test_events_are_tagged_by_their_cgroup_id_even_when_the_process_is_gone(hierarchy):
    tagger = EventContainers(catalog=None, cgroup_ids=CgroupIds(root=str(hierarchy)))
    cgroup_id = os.stat(hierarchy / "docker" / ID_A).st_ino
    gone_pid = 2 ** 22 + 17                                  # above pid_max's ceiling: never a process
    event = Event(kind=EventKind.EXEC, seq=1, ts=0.0, pid=gone_pid, tid=gone_pid, ppid=1, uid=0, vpid=1,
                  comm="ls", cgroup_id=cgroup_id)
    found = tagger.tag(event)
    assert found.id == ID_A and found.source == "cgroup"
    assert event.container == ID_A[:12]
    # on the host: no container, and the event says so
    host = Event(kind=EventKind.EXEC, seq=2, ts=0.0, pid=gone_pid, tid=gone_pid, ppid=1, uid=0, vpid=1, comm="ls",
                 cgroup_id=os.stat(hierarchy / "system.slice").st_ino)
    assert tagger.tag(host) is None and host.container is None


def test_events_without_a_cgroup_id_fall_back_to_proc(hierarchy):
    tagger = EventContainers(catalog=None, cgroup_ids=CgroupIds(root=str(hierarchy)))
    mine = Event(kind=EventKind.EXEC, seq=1, ts=0.0, pid=os.getpid(), tid=os.getpid(), ppid=1, uid=0, vpid=1,
                 comm="pytest", container="stale")
    expected = C.parse_cgroup(C.read_cgroup(os.getpid()))     # ground truth: this process's own cgroup file
    found = tagger.tag(mine)
    assert (found.id if found else None) == (expected.id if expected else None)
    assert mine.container == (found.name if found else None)
