"""The CI package audit (.ci/package_audit.py): its dpkg logic, on a made-up database.
The recorder and the whole audit, for real: tests/infra/test_package_audit_live.py."""

from __future__ import annotations

import importlib.util
import os

from conftest import REPO

AUDIT_PATH = os.path.join(REPO, ".ci", "package_audit.py")


def _load():
    spec = importlib.util.spec_from_file_location("package_audit", AUDIT_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


audit = _load()

STATUS = """\
Package: base-files
Status: install ok installed
Priority: required
Essential: yes
Depends: libc6 (>= 2.34)

Package: libc6
Status: install ok installed
Priority: optional
Architecture: amd64

Package: vagrant
Status: install ok installed
Priority: optional
Depends: ruby (>= 1:3.1), ruby-net-ssh | ruby-net-ssh-old, bsdtar | libarchive-tools
Recommends: vagrant-libvirt

Package: ruby
Status: install ok installed
Priority: optional
Pre-Depends: libruby3.1:any

Package: libruby3.1
Status: install ok installed
Priority: optional

Package: ruby-net-ssh
Status: install ok installed
Priority: optional

Package: ruby-net-ssh-old
Status: install ok installed
Priority: optional

Package: libarchive-tools
Status: install ok installed
Priority: optional
Provides: bsdtar

Package: vagrant-libvirt
Status: install ok installed
Priority: optional
Depends: vagrant, ruby-fog-libvirt

Package: ruby-fog-libvirt
Status: install ok installed
Priority: optional

Package: removed-one
Status: deinstall ok config-files
Priority: optional
"""


def test_relations_are_parsed_to_names_and_alternatives():
    assert audit.parse_relation("a (>= 1), b:any | c [amd64], d <!nocheck>") == [["a"], ["b", "c"], ["d"]]
    assert audit.parse_relation("") == []


def test_closure_follows_depends_not_recommends():
    db = audit.Installed(STATUS)
    assert "removed-one" not in db.packages
    assert db.base() == {"base-files"}
    got = db.closure({"vagrant"} | db.base())
    # Pre-Depends with :any, the first installed alternative, a virtual package through Provides
    assert got == {"base-files", "libc6", "vagrant", "ruby", "libruby3.1", "ruby-net-ssh", "libarchive-tools"}
    assert "vagrant-libvirt" not in got          # only a Recommends
    assert "ruby-net-ssh-old" not in got         # the second alternative: apt takes the first
    assert "ruby-fog-libvirt" in db.closure({"vagrant-libvirt"})


def test_a_file_of_a_recommended_package_is_reported(tmp_path):
    info = tmp_path / "info"
    info.mkdir()
    (info / "vagrant.list").write_text("/.\n/usr\n/usr/bin/vagrant\n")
    (info / "vagrant-libvirt.list").write_text("/usr/share/vagrant-plugins/plugins.d/vagrant-libvirt.json\n")
    (info / "libc6:amd64.list").write_text("/lib/x86_64-linux-gnu/libc.so.6\n")
    (info / "locales.list").write_text("/etc/locale.alias\n")
    # usr-merge: /lib is a link to /usr/lib, and the kernel reports the real path
    owners = audit.file_owners(str(info), resolve=lambda d: "/usr" + d if d.startswith("/lib") else d)
    assert owners["/usr/lib/x86_64-linux-gnu/libc.so.6"] == {"libc6"}
    assert owners["/lib/x86_64-linux-gnu/libc.so.6"] == {"libc6"}
    assert "/." not in owners
    db = audit.Installed(STATUS)
    allowed = db.closure({"vagrant"} | db.base())
    opened = {
        "/usr/bin/vagrant": {"pid": 10, "comm": "vagrant"},
        "/usr/lib/x86_64-linux-gnu/libc.so.6": {"pid": 10, "comm": "vagrant"},
        "/usr/share/vagrant-plugins/plugins.d/vagrant-libvirt.json": {"pid": 10, "comm": "vagrant"},
        "/etc/locale.alias": {"pid": 10, "comm": "vagrant"},
        "/tmp/not-a-package-file": {"pid": 11, "comm": "sh"},
    }
    missing = audit.find_unnamed(opened, owners, allowed, used_when_present={"locales": "read when present"})
    assert list(missing) == ["vagrant-libvirt"]
    assert missing["vagrant-libvirt"][0]["comm"] == "vagrant"
    # naming it in set-up makes the run clean
    allowed_now = db.closure({"vagrant", "vagrant-libvirt"} | db.base())
    assert audit.find_unnamed(opened, owners, allowed_now, used_when_present={"locales": "x"}) == {}
    # without the allow-list entry, an opportunistic read still counts
    assert "locales" in audit.find_unnamed(opened, owners, allowed_now, used_when_present={})


def test_a_file_owned_by_several_packages_is_fine_when_one_is_allowed():
    owners = {"/usr/share/thing": {"a", "b"}}
    assert audit.find_unnamed({"/usr/share/thing": {"pid": 1, "comm": "x"}}, owners, {"b"}, {}) == {}


def test_inventory_reads_do_not_count():
    spec = "/usr/share/rubygems-integration/all/specifications/fog-core-2.3.0.gemspec"
    meta = "/usr/lib/python3/dist-packages/yaml-6.0.dist-info/entry_points.txt"
    assert audit.inventory_read("/etc/apt/apt.conf.d/20packagekit")
    owners = {spec: {"ruby-fog-core"}, meta: {"python3-yaml"}}
    opened = {spec: {"pid": 1, "comm": "ruby"}, meta: {"pid": 2, "comm": "python3"}}
    assert audit.find_unnamed(opened, owners, set(), {}) == {}
    assert audit.used_packages(opened, owners) == set()
    # but loading the gem's code does count
    code = "/usr/share/rubygems-integration/all/gems/fog-core-2.3.0/lib/fog/core.rb"
    owners[code] = {"ruby-fog-core"}
    assert list(audit.find_unnamed({code: {"pid": 1, "comm": "ruby"}}, owners, set(), {})) == ["ruby-fog-core"]
