"""Container attribution from cgroup paths (no Docker needed).

The cgroup lines below are in the exact formats the runtimes write: the Docker
cgroupfs one was recorded on this project's CI machine (hybrid v1/v2 host, Docker
20.10); the others follow lines published in runtime and agent test suites
(Kubernetes cgroupfs and systemd drivers, CRI-O, containerd on Bottlerocket,
Podman root and rootless, systemd-nspawn, libvirt).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings, strategies as st

from tracer.containers import cgroups as C
from tracer.containers import records
from tracer.containers.catalog import ContainerCatalog

ID_A = "ee7cde410171c8b145152a7279659c1be3e43ca16fe1fa4fc03bdb64df1fa5b4"
ID_B = "9ec39b91f3d70e1beff50a308f77067065ea6be0d91a3378375056cd4422cf3d"
ID_C = "f45298cd514d1930c4fe3afc4412e59547f7e3148fddd22ca33cefce046eb830"
ID_D = "6dd05e91f00f99281f70b1fd90a29e5cc30b0dab243cb7cfb6153d8017872394"

# Recorded here: `docker run` on a hybrid cgroup host with the cgroupfs driver.
RECORDED_DOCKER_HYBRID = """\
9:name=systemd:/docker/%(a)s
8:pids:/docker/%(a)s
7:blkio:/docker/%(a)s
6:freezer:/docker/%(a)s
5:devices:/docker/%(a)s
4:memory:/docker/%(a)s
3:cpuset:/docker/%(a)s
2:cpuacct:/docker/%(a)s
1:cpu:/docker/%(a)s
0::/docker/%(a)s
""" % {"a": ID_A}

CASES = [
    # (cgroup text, runtime, id, name_hint, pod_uid)
    (RECORDED_DOCKER_HYBRID, C.DOCKER, ID_A, None, None),
    ("0::/docker/%s" % ID_A, C.DOCKER, ID_A, None, None),
    ("0::/system.slice/docker-%s.scope" % ID_B, C.DOCKER, ID_B, None, None),
    # a container running systemd: its processes sit below the scope
    ("0::/system.slice/docker-%s.scope/init.scope" % ID_B, C.DOCKER, ID_B, None, None),
    # cgroup v1 only (CentOS 7 style), no unified line at all
    ("10:devices:/system.slice/docker-%s.scope\n2:cpuacct,cpu:/system.slice/docker-%s.scope\n"
     "1:name=systemd:/system.slice/docker-%s.scope\n" % (ID_B, ID_B, ID_B), C.DOCKER, ID_B, None, None),
    # hybrid host where the unified line stays at the root: the v1 lines decide
    ("1:name=systemd:/docker/%s\n0::/\n" % ID_A, C.DOCKER, ID_A, None, None),
    # Kubernetes, cgroupfs driver
    ("11:devices:/kubepods/besteffort/pod74ba62da-1a3d-11e7-bb11-080027cb0e22/"
     "cb1eadb7abe3a6545e9856411207073277838e1bdc003337c2f8685faeedc32c",
     C.CRI, "cb1eadb7abe3a6545e9856411207073277838e1bdc003337c2f8685faeedc32c", None,
     "74ba62da-1a3d-11e7-bb11-080027cb0e22"),
    # guaranteed QoS: no QoS component; a sub-cgroup below the container
    ("0::/kubepods/podf8a694f2-7c08-11e9-98da-000c29077430/"
     "c04e0a88a1de067f25bece337d4dbb897396e0b623c2a65330850fc9823f1903/kube-proxy",
     C.CRI, "c04e0a88a1de067f25bece337d4dbb897396e0b623c2a65330850fc9823f1903", None,
     "f8a694f2-7c08-11e9-98da-000c29077430"),
    # Kubernetes, systemd driver: containerd, docker, CRI-O
    ("0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-poddd1bf9d1_241d_47f5_8e25_"
     "12de83135812.slice/cri-containerd-%s.scope" % ID_C,
     C.CONTAINERD, ID_C, None, "dd1bf9d1-241d-47f5-8e25-12de83135812"),
    ("11:cpuset:/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod045b1e35_7f13_11e7_"
     "ac42_0050568ffca0.slice/docker-b5b6f2da8008be266864f896f93789762b2ce50792114a5c5f2cc3315af0bc70.scope",
     C.DOCKER, "b5b6f2da8008be266864f896f93789762b2ce50792114a5c5f2cc3315af0bc70", None,
     "045b1e35-7f13-11e7-ac42-0050568ffca0"),
    ("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0a1b2c3d_4e5f_6789_abcd_"
     "ef0123456789.slice/crio-%s.scope" % ID_D, C.CRIO, ID_D, None, "0a1b2c3d-4e5f-6789-abcd-ef0123456789"),
    ("0::/kubepods.slice/kubepods-pod0a1b2c3d_4e5f_6789_abcd_ef0123456789.slice/crio-%s.scope" % ID_D,
     C.CRIO, ID_D, None, "0a1b2c3d-4e5f-6789-abcd-ef0123456789"),
    # Podman: systemd driver, podman 4 `container` sub-cgroup, cgroupfs driver, rootless, pods
    ("0::/machine.slice/libpod-%s.scope" % ID_D, C.PODMAN, ID_D, None, None),
    ("0::/machine.slice/libpod-%s.scope/container" % ID_D, C.PODMAN, ID_D, None, None),
    ("0::/libpod_parent/libpod-%s" % ID_D, C.PODMAN, ID_D, None, None),
    ("0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-%s.scope/container" % ID_D,
     C.PODMAN, ID_D, None, None),
    ("0::/machine.slice/machine-libpod_pod_0262e761c5b499b1ad78250d810594064f61cc61a524d72d58690e52e727ec2a"
     ".slice/libpod-%s.scope/container" % ID_D, C.PODMAN, ID_D, None,
     "0262e761c5b499b1ad78250d810594064f61cc61a524d72d58690e52e727ec2a"),
    # systemd-nspawn: machine names are systemd-escaped
    ("0::/machine.slice/machine-debian\\x2dtest.scope/payload", C.NSPAWN, "debian-test", "debian-test", None),
    ("0::/machine.slice/machine-web.scope", C.NSPAWN, "web", "web", None),
    ("0::/machine.slice/machine-qemu\\x2d1\\x2dwin11.scope/libvirt/vcpu0", C.VM, "qemu-1-win11",
     "qemu-1-win11", None),
    ("0::/lxc.payload.web01", C.LXC, "web01", "web01", None),
    ("0::/system.slice/nerdctl-%s.scope" % ID_C, C.CONTAINERD, ID_C, None, None),
    # custom --cgroup-parent: a bare container id of no known layout
    ("0::/mygroup/%s" % ID_A, C.UNKNOWN, ID_A, None, None),
    # the cgroup was removed while we read it
    ("0::/docker/%s (deleted)" % ID_A, C.DOCKER, ID_A, None, None),
]


@pytest.mark.parametrize("text,runtime,cid,name_hint,pod_uid", CASES)
def test_runtime_layouts(text, runtime, cid, name_hint, pod_uid):
    ref = C.parse_cgroup(text)
    assert ref is not None, text
    assert (ref.runtime, ref.id, ref.name_hint, ref.pod_uid) == (runtime, cid, name_hint, pod_uid)


@pytest.mark.parametrize("text", [case[0] for case in CASES])
def test_each_line_alone_and_as_bytes(text):
    """A single line, the bare path and the bytes of the file give the same answer."""
    expected = C.parse_cgroup(text)
    last = text.strip().splitlines()[-1]
    assert C.parse_cgroup(last.encode()) == C.parse_cgroup(last)
    path = last.split(":", 2)[2]
    assert C.parse_cgroup(path) == C.parse_cgroup(last)
    assert C.parse_cgroup(text.encode()) == expected


def test_docker_in_docker_gives_inner_with_outer():
    inner = "ec08435e04266c5ba381fccbb829f626d11d8ddf5f8f547263c7a2d79ab4787a"
    outer = "a9a5ad238e59234193ee7ec3fcff5e735b3708ea1068826952255b69e3cfa413"
    ref = C.parse_cgroup("9:name=systemd:/docker/%s/docker/%s" % (outer, inner))
    assert ref.id == inner and ref.runtime == C.DOCKER
    assert [o.id for o in ref.outer] == [outer]
    # docker inside an nspawn machine
    ref = C.parse_cgroup("0::/machine.slice/machine-box.scope/payload/system.slice/docker-%s.scope" % inner)
    assert (ref.runtime, ref.id) == (C.DOCKER, inner)
    assert [(o.runtime, o.id) for o in ref.outer] == [(C.NSPAWN, "box")]
    assert ref.pod_uid is None


def test_pod_uid_does_not_leak_into_nested_container():
    ref = C.parse_cgroup("0::/kubepods/besteffort/pod74ba62da-1a3d-11e7-bb11-080027cb0e22/%s/docker/%s"
                         % (ID_A, ID_B))
    assert ref.id == ID_B and ref.runtime == C.DOCKER and ref.pod_uid is None
    assert ref.outer[0].pod_uid == "74ba62da-1a3d-11e7-bb11-080027cb0e22"


@pytest.mark.parametrize("text", [
    "", "\n", "0::/", "0::/init.scope", "garbage", ":::", "0:", "0::", "0::relative/docker/%s" % ID_A,
    # host processes on hybrid and v1 hosts
    "13:name=systemd:/user/1000.user/c2.session\n12:pids:/\n1:cpuset:/",
    "0::/user.slice/user-1000.slice/session-3.scope",
    "0::/system.slice/docker.service", "0::/system.slice/containerd.service",
    "4:memory:/process_api/0385035d4c38d7fb425e526515f9d99f\n0::/",
    # monitors are not the container
    "0::/machine.slice/libpod-conmon-%s.scope" % ID_D,
    "0::/system.slice/crio-conmon-%s.scope" % ID_D,
    "0::/lxc.monitor.web01",
    # near misses: wrong length, not hex, uppercase, empty id, missing suffix
    "0::/docker/%s" % ID_A[:-1], "0::/docker/%sa" % ID_A, "0::/docker/%s" % ID_A.upper(),
    "0::/docker/%sz" % ID_A[:-1], "0::/system.slice/docker-.scope",
    "0::/system.slice/docker-%s" % ID_B, "0::/system.slice/docker-%s.service" % ID_B,
    "0::/kubepods.slice/kubepods-burstable.slice", "0::/machine.slice/machine-.scope",
    "0::/machine.slice/machine-libpod_pod_%s.slice" % ID_D,
    # escaping that would smuggle a path separator or control characters into a name
    "0::/machine.slice/machine-a\\x2fb.scope", "0::/machine.slice/machine-\\x0a.scope",
    # absurd sizes
    "0::/" + "a" * 1_000_000, "0::/" + "docker/" * 50_000, "0::/" + "/" * 300_000,
    "0::/docker/" + "f" * 10_000,
])
def test_odd_and_hostile_input_gives_none(text):
    assert C.parse_cgroup(text) is None


@pytest.mark.parametrize("value", [None, 0, 12, [], {}, object(), b"\xff\xfe\x00", bytearray(b"0::/")])
def test_non_text_gives_none(value):
    assert C.parse_cgroup(value) is None
    assert C.parse_cgroup_path(value) is None


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("0123456789abcdef:/-._\\x\n podkubes"), max_size=400))
def test_never_raises_on_cgroupish_text(text):
    ref = C.parse_cgroup(text)
    if ref is not None:
        # whatever it finds is a well-formed reference, never a fragment
        assert ref.runtime and ref.id and "/" not in ref.id


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_never_raises_on_bytes(data):
    C.parse_cgroup(data)


def test_systemd_unescape():
    assert C.systemd_unescape("debian\\x2dtest") == "debian-test"
    assert C.systemd_unescape("a\\x5cb") == "a\\b"
    assert C.systemd_unescape("plain") == "plain"


def test_short_id_and_json():
    ref = C.parse_cgroup("0::/docker/%s" % ID_A)
    assert ref.short_id == ID_A[:12]
    c = records.container_from_ref(ref)
    assert c.name == ID_A[:12] and c.image is None and c.state == "unknown" and c.source == "cgroup"
    j = c.to_json()
    for key in ("id", "name", "image", "runtime", "pid", "labels", "state"):
        assert key in j
    nspawn = records.container_from_ref(C.parse_cgroup("0::/machine.slice/machine-web.scope"))
    assert nspawn.name == "web" and nspawn.short_id == "web"


def test_container_from_inspect_uses_docker_ps_conventions():
    attrs = {"Id": ID_A, "Name": "/myapp", "Image": "sha256:" + "0" * 64,
             "Config": {"Image": "nsgraph-demo:latest", "Labels": {"k": "v"}},
             "State": {"Status": "running", "Running": True, "Pid": 4242}}
    c = records.container_from_inspect(attrs)
    assert (c.name, c.image, c.pid, c.state, c.labels) == ("myapp", "nsgraph-demo:latest", 4242,
                                                           "running", {"k": "v"})
    # the `docker ps` row wins for the image column (it shows an id when the tag moved)
    c = records.container_from_inspect(attrs, {"Id": ID_A, "Image": "0123456789ab"})
    assert c.image == "0123456789ab"
    stopped = dict(attrs, State={"Status": "exited", "Running": False, "Pid": 0})
    assert records.container_from_inspect(stopped).pid is None


def test_read_cgroup_of_vanished_or_bogus_pid():
    assert C.read_cgroup(2 ** 22 + 17) is None  # above pid_max's ceiling: never a process
    assert C.read_cgroup(-1) is None
    assert C.read_cgroup("1; rm -rf /") is None
    text = C.read_cgroup(os.getpid())
    assert text is not None and ":" in text


def test_catalog_without_docker_degrades_to_cgroups():
    """A real client pointed at a socket that does not exist: the catalog says why and still attributes."""
    import docker

    def factory():
        return docker.DockerClient(base_url="unix:///nonexistent/nsgraph-test/docker.sock", timeout=2)

    seen = []
    with ContainerCatalog(client_factory=factory, backoff=(0.05, 0.2)) as catalog:
        catalog.subscribe(lambda action, c: seen.append(action))
        assert not catalog.connected
        assert "start dockerd" in catalog.status and "cgroup paths only" in catalog.status
        c = catalog.resolve(1234, "0::/system.slice/docker-%s.scope" % ID_B)
        assert c is not None and c.id == ID_B and c.name == ID_B[:12] and c.source == "cgroup"
        assert catalog.resolve(1234, "0::/user.slice") is None
        assert catalog.by_name("anything") is None and catalog.containers() == []
        assert catalog.counters["lookups"] == 0  # nothing is asked of an engine that is not there
    assert catalog.status == "closed" and seen == []
    assert not catalog._thread.is_alive()
