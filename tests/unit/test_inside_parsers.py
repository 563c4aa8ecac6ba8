"""The inside view's pure parts: /proc and netlink parsers, id checks, compare, rendering, limits.

Inputs are what this kernel writes (captured from Linux 6.18 /proc files) and
hand-made malformed variants; the real-namespace checks against nsenter and
friends are in tests/kernel/test_inside_kernel.py and tests/docker/.
"""

from __future__ import annotations

import json
import socket
import struct

import pytest

from tracer.commands.inspect import render_compare, render_view
from tracer.host.inside import cgroupns, ipcns, mntns, netlink, netns, pidns, timens, userns
from tracer.host.inside.helper import JOIN_ORDER, parse_request
from tracer.host.inside.resolve import BadRef, parse_ref
from tracer.host.inside.view import compare
from webapp.inside import InsideGate, InsideLimits

ROUTE = """Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
eth1\t00000000\t0102A8C0\t0003\t0\t0\t50\t00000000\t0\t0\t0
eth2\t00000000\t00000000\t0201\t0\t0\t0\t00000000\t0\t0\t0
"""

IPV6_ROUTE = """\
fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000002 00000000 00000003     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
garbage line
"""

TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:3F5D 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2855521 1
   1: 0100007F:3F5E 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 2857215 1
   2: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2857216 1
"""

SHM = """       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap
 -490865632          0   644                  4096  2939     0      0     0     0     0     0          0          0 1764730000                     0                     0
   12345678          1   600                  8192  2939     0      0  1000     0     0     0          0          0 1764730000                     0                     0
"""

MOUNTINFO = r"""24 1 253:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
25 24 0:22 / /proc rw,nosuid - proc proc rw
26 24 0:23 / /mnt/with\040space rw master:3 propagate_from:2 - tmpfs my\040tmpfs rw
broken line without separator
27 24 0:24 / / rw - overlay overlay rw,lowerdir=/a
"""


def test_ipv4_default_routes_lowest_metric_first_and_reject_routes_left_out():
    routes = netns.parse_route(ROUTE)
    assert routes == [{"gateway": "192.168.2.1", "dev": "eth1", "metric": 50},
                      {"gateway": "192.0.2.1", "dev": "eth0", "metric": 100}]
    assert netns.parse_route(ROUTE.splitlines()[0]) == []


def test_ipv6_default_routes_skip_the_unreachable_one_on_lo():
    assert netns.parse_ipv6_route(IPV6_ROUTE) == [{"gateway": "fd00::1", "dev": "eth0", "metric": 1024}]


def test_listening_sockets_counted_by_state():
    assert netns.count_sockets(TCP, netns.TCP_LISTEN) == 2
    assert netns.count_sockets(TCP.splitlines()[0], netns.TCP_LISTEN) == 0


def _nlmsg(msg_type: int, body: bytes, seq: int = 1) -> bytes:
    data = struct.pack("=IHHII", 16 + len(body), msg_type, 2, seq, 0) + body
    return data + b"\0" * (-len(data) % 4)


def _attr(kind: int, payload: bytes) -> bytes:
    data = struct.pack("=HH", 4 + len(payload), kind) + payload
    return data + b"\0" * (-len(data) % 4)


def test_netlink_link_and_address_parsing():
    link_body = (struct.pack("=BxHiII", 0, 1, 7, 0x1 | 0x2 | 0x1000, 0)        # UP, no RUNNING
                 + _attr(netlink.IFLA_IFNAME, b"eth0\0") + _attr(netlink.IFLA_MTU, struct.pack("=I", 1500))
                 + _attr(netlink.IFLA_ADDRESS, bytes([2, 0x42, 0xAC, 0x11, 0, 2]))
                 + _attr(netlink.IFLA_OPERSTATE, b"\x02")
                 + _attr(netlink.IFLA_LINK, struct.pack("=I", 12))
                 + _attr(netlink.IFLA_LINKINFO | 0x8000, _attr(netlink.IFLA_INFO_KIND, b"veth\0")))
    (kind, _flags, seq, body), = list(netlink.messages(_nlmsg(netlink.RTM_NEWLINK, link_body)))
    link = netlink.parse_link(body)
    assert (kind, seq) == (netlink.RTM_NEWLINK, 1)
    assert link["name"] == "eth0" and link["index"] == 7 and link["mtu"] == 1500
    assert link["mac"] == "02:42:ac:11:00:02" and link["state"] == "DOWN" and link["kind"] == "veth"
    assert link["flags"] == ["NO-CARRIER", "BROADCAST", "MULTICAST", "UP"]
    assert link["link_index"] == 12 and link["link_type"] == "ether"
    addr_body = (struct.pack("=BBBBI", socket.AF_INET, 16, 0, 0, 7)
                 + _attr(netlink.IFA_ADDRESS, socket.inet_aton("172.17.0.2"))
                 + _attr(netlink.IFA_LOCAL, socket.inet_aton("172.17.0.2"))
                 + _attr(netlink.IFA_LABEL, b"eth0\0"))
    assert netlink.parse_addr(addr_body) == (7, {"family": "inet", "address": "172.17.0.2",
                                                  "prefixlen": 16, "scope": "global", "label": "eth0"})
    v6 = struct.pack("=BBBBI", socket.AF_INET6, 64, 0, 253, 7) + _attr(
        netlink.IFA_ADDRESS, socket.inet_pton(socket.AF_INET6, "fe80::42:acff:fe11:2"))
    assert netlink.parse_addr(v6)[1]["address"] == "fe80::42:acff:fe11:2"
    assert netlink.parse_addr(struct.pack("=BBBBI", socket.AF_PACKET, 0, 0, 0, 7)) is None


@pytest.mark.parametrize("data", [
    struct.pack("=IHHII", 8, 16, 0, 1, 0),              # length below the header
    struct.pack("=IHHII", 400, 16, 0, 1, 0) + b"x" * 8,  # length past the end
])
def test_malformed_netlink_messages_raise_netlink_error(data):
    with pytest.raises(netlink.NetlinkError):
        list(netlink.messages(data))


def test_malformed_netlink_bodies_raise_netlink_error():
    with pytest.raises(netlink.NetlinkError):
        netlink.parse_link(b"\0" * 10)
    with pytest.raises(netlink.NetlinkError):
        netlink.attributes(struct.pack("=HH", 40, 3) + b"eth0")
    with pytest.raises(netlink.NetlinkError):       # an IPv4 address of 3 bytes
        netlink.parse_addr(struct.pack("=BBBBI", socket.AF_INET, 8, 0, 0, 1) + _attr(netlink.IFA_LOCAL, b"\1\2\3"))


def test_sysvipc_counts_keys_as_ipcs_prints_them():
    part = ipcns.parse_sysvipc(SHM, "size")
    assert part["count"] == 2
    assert part["objects"][0] == {"key": "0xe2bdfc20", "id": 0, "uid": 0, "size": 4096}
    assert part["objects"][1]["key"] == "0x00bc614e" and part["objects"][1]["uid"] == 1000
    assert ipcns.parse_sysvipc(SHM.splitlines()[0], "size") == {"count": 0, "objects": []}
    assert ipcns.parse_sysvipc("", "size") == {"count": 0, "objects": []}


def test_time_offsets_and_uptime():
    assert timens.parse_offsets("monotonic       3600         0\nboottime  -7200 500000000\nbad\n") == \
        {"monotonic": 3600.0, "boottime": -7199.5}
    assert timens.parse_uptime("19112.53 37000.12\n") == 19112.53
    assert timens.parse_uptime("") is None


@pytest.mark.parametrize("outside,inside,expected_root", [
    ("/docker/abc", "/", "/docker/abc"),
    ("/system.slice/docker-1.scope/sub", "/sub", "/system.slice/docker-1.scope"),
    ("/a/b", "/a/b", "/"),
    ("/x", "/../x", None),            # the member left the namespace's root: one path cannot tell
    ("/a/b", "/c", None),
])
def test_cgroup_namespace_root(outside, inside, expected_root):
    assert cgroupns.namespace_root(outside, inside) == expected_root


def test_cgroup_view_prefers_the_unified_hierarchy():
    outside = "4:memory:/docker/abc\n0::/docker/abc\n"
    inside = "4:memory:/\n0::/\n"
    view = cgroupns.view_from(outside, inside)
    assert view["root"] == "/docker/abc" and view["inside"] == "/"
    assert [h["controllers"] for h in view["hierarchies"]] == ["memory", "(v2)"]


def test_mountinfo_escapes_optional_fields_and_stacked_roots():
    mounts = mntns.parse_mountinfo(MOUNTINFO)
    assert [m["id"] for m in mounts] == [24, 25, 26, 27]
    assert mounts[2]["target"] == "/mnt/with space" and mounts[2]["source"] == "my tmpfs"
    view = mntns.view_from(MOUNTINFO)
    assert view["root"]["fstype"] == "overlay"          # mount 27 sits on top of 24 at /
    assert view["count"] == 4 and view["fstypes"] == {"ext4": 1, "overlay": 1, "proc": 1, "tmpfs": 1}


def test_id_maps():
    m = userns.parse_id_map("         0      65534          1\n      1000     100000      65536\nbad\n")
    assert m == [{"inside": 0, "outside": 65534, "count": 1}, {"inside": 1000, "outside": 100000, "count": 65536}]
    assert userns.maps_to(m, 0) == 65534 and userns.maps_to(m, 1001) == 100001 and userns.maps_to(m, 5) is None


def test_status_fields():
    status = pidns.parse_status("Name:\tsleep\nState:\tS (sleeping)\nPPid:\t26503\n"
                                "Uid:\t0\t0\t0\t0\nNSpid:\t26538\t1\n")
    assert status == {"comm": "sleep", "state": "S", "ppid": 26503, "uid": 0, "nspid": [26538, 1]}


@pytest.mark.parametrize("text,key", [
    ("net:4:4026531840:0", "net:4:4026531840:0"),
    ("net:4026531840", "net:4026531840"),
    ("net:[4026531840]", "net:4026531840"),
    ("cgroup:00012", "cgroup:12"),
])
def test_namespace_refs_of_known_shapes(text, key):
    assert parse_ref(text) == key


@pytest.mark.parametrize("text", [
    "", "net", "net:", "bogus:123", "net:12:34", "net:-1", "net:1:2:3:4", "net:²", "net:1 ",
    "../../etc/passwd", "net:1;rm -rf /", "net:1\n", "net:" + "9" * 30, "x" * 500, "NET:1", None, 12,
])
def test_hostile_refs_are_refused(text):
    with pytest.raises(BadRef):
        parse_ref(text)


def _view(label, fields, state="ok", ns_type="uts", inode=1):
    return {"id": "%s:4:%d:0" % (ns_type, inode), "type": ns_type, "inode": inode, "label": label,
            "state": state, "message": None if state == "ok" else "gone", "read_via": "pid 1",
            "fields": fields}


def test_compare_aligns_rows_by_label_and_marks_differences():
    a = _view("host", [["hostname", "vm"], ["domainname", "(none)"], ["  eth0", "UP"]])
    b = _view("container c", [["hostname", "abc"], ["domainname", "(none)"]], inode=2)
    c = _view("gone", [], state="ended", inode=3)
    table = compare([a, b, c])
    assert [r["label"] for r in table["rows"]] == ["hostname", "domainname", "  eth0"]
    assert table["rows"][0] == {"label": "hostname", "values": ["vm", "abc", None], "same": False}
    assert table["rows"][2]["values"] == ["UP", None, None]
    same = compare([a, dict(a, inode=5)])
    assert all(r["same"] for r in same["rows"])
    with pytest.raises(ValueError):
        compare([a, _view("n", [], ns_type="net")])


def test_rendering_is_terminal_safe_and_columns_are_cut():
    evil = _view("pid 7 (\x1b[31mred)", [["hostname", "x\x1b]0;owned\x07"], ["ps", ["  PID COMMAND", "    1 " + "a" * 300]]])
    text = render_view(evil)
    assert "\x1b" not in text and "\x07" not in text and "\\x1b" in text
    table = compare([evil, _view("host", [["hostname", "vm"]], inode=9)])
    out = render_compare(table, width=80)
    assert "\x1b" not in out and all(len(line) <= 80 for line in out.splitlines())
    assert out.splitlines()[2].startswith("*")           # hostname differs


def test_helper_requests_are_checked_and_ordered():
    jobs = parse_request(json.dumps({"jobs": [{"type": "user", "fd": 5}, {"type": "mnt", "fd": 6},
                                              {"type": "uts", "fd": 7, "extra": {}}]}).encode())
    assert [j[1] for j in jobs] == ["uts", "mnt", "user"]          # mount, then user, last
    assert JOIN_ORDER[-2:] == ("mnt", "user")
    for bad in (b"", b"[]", b'{"jobs": []}', b'{"jobs": [{"type": "pid", "fd": 5}]}',
                b'{"jobs": [{"type": "uts", "fd": 1}]}', b'{"jobs": [{"type": "uts", "fd": true}]}',
                b'{"jobs": [{"type": "uts", "fd": "5"}]}', b'{"jobs": [{"type": "uts", "fd": 5, "extra": {"x": 2}}]}',
                b'{"jobs": [{"type": "user", "fd": 5}, {"type": "user", "fd": 6}]}', b"\xff\xfe"):
        with pytest.raises(ValueError):
            parse_request(bad)


def test_gate_rate_limit_counts_namespaces_and_says_when_to_retry():
    gate = InsideGate(InsideLimits(reads_per_window=3, window_s=30, concurrent=5, queue_wait_s=0))
    assert gate.admit(2) is None
    gate.release()
    refused = gate.admit(2)
    assert refused is not None and 1 <= refused[0] <= 31 and "rate limit" in refused[1]
    assert gate.admit(1) is None
    gate.release()
    assert gate.counters["refused_rate"] == 1 and gate.counters["admitted"] == 2


def test_gate_caps_concurrent_reads():
    gate = InsideGate(InsideLimits(reads_per_window=100, window_s=10, concurrent=1, queue_wait_s=0))
    assert gate.admit(1) is None
    assert gate.admit(1)[0] == 1          # busy: retry in a second
    gate.release()
    assert gate.admit(1) is None
    gate.release()
    assert gate.counters["refused_busy"] == 1


# -- the helper process and its bounds (real processes; no root needed) ---------------------

def test_helper_round_trip_over_its_own_uts_namespace():
    """The real helper, started as the server starts it, asked about this process's own uts
    namespace: as root it joins and answers; without root setns says EPERM, and the answer says why."""
    import errno
    import os

    from tracer.host.inside.spawn import STATS, run_helper
    fd = os.open("/proc/self/ns/uts", os.O_RDONLY)
    try:
        started = STATS.snapshot()["started"]
        (answer,) = run_helper([{"type": "uts", "fd": fd, "extra": {}}], timeout=60)
        assert STATS.snapshot()["started"] == started + 1
    finally:
        os.close(fd)
    if os.geteuid() == 0:
        assert answer == {"view": {"hostname": socket.gethostname(),
                                   "domainname": open("/proc/sys/kernel/domainname").read().strip()}}
    else:
        assert answer["errno"] == errno.EPERM and answer["error"].startswith("setns(uts)")


def test_helper_exchange_is_bounded_in_time_and_size():
    import subprocess
    import time

    from tracer.host.inside import spawn
    slow = subprocess.Popen(["sleep", "30"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    t0 = time.monotonic()
    with pytest.raises(spawn.HelperError) as err:
        spawn._exchange(slow, b"{}", time.monotonic() + 0.3)
    spawn._reap(slow, grace=0)
    assert err.value.reason == "timeout" and time.monotonic() - t0 < 5 and slow.returncode == -9
    chatty = subprocess.Popen(["cat", "/dev/zero"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, start_new_session=True)
    with pytest.raises(spawn.HelperError) as err:
        spawn._exchange(chatty, b"", time.monotonic() + 60)
    spawn._reap(chatty, grace=0)
    assert err.value.reason == "oversize"
