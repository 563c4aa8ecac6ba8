"""The CI package audit (.ci/package_audit.py): its dpkg logic on a made-up database,
and its recorder on the real kernel (fanotify) with real commands.

The live tests are the proof that CI catches what issue 15 found: a test that only
passes because the machine happens to have a package (vagrant-libvirt, which
`vagrant` merely recommends) fails the audit unless set-up names that package.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, require

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
    owners = {spec: {"ruby-fog-core"}, meta: {"python3-yaml"}}
    opened = {spec: {"pid": 1, "comm": "ruby"}, meta: {"pid": 2, "comm": "python3"}}
    assert audit.find_unnamed(opened, owners, set(), {}) == {}
    assert audit.used_packages(opened, owners) == set()
    # but loading the gem's code does count
    code = "/usr/share/rubygems-integration/all/gems/fog-core-2.3.0/lib/fog/core.rb"
    owners[code] = {"ruby-fog-core"}
    assert list(audit.find_unnamed({code: {"pid": 1, "comm": "ruby"}}, owners, set(), {})) == ["ruby-fog-core"]


# -- the recorder and the whole audit, for real ------------------------------------------------


def _run_audit(named, *argv, tmp_path, cwd=None):
    report = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, AUDIT_PATH, "run", "--named", " ".join(named),
                           "--report", str(report), "--", *argv],
                          capture_output=True, text=True, timeout=300, cwd=cwd)
    import json
    return proc, (json.loads(report.read_text()) if report.exists() else None)


@pytest.fixture
def as_root():
    require(os.geteuid() == 0, "the audit's recorder needs root (a mount namespace and fanotify)")


def test_recorder_sees_what_a_command_opens_and_only_that(as_root, tmp_path):
    busybox = shutil.which("busybox")
    require(busybox is not None, "busybox-static is not installed (scripts/setup.sh installs it)")
    proc, report = _run_audit(["python3"], busybox, "true", tmp_path=tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert "busybox-static" in report["missing"], proc.stderr
    assert "busybox-static" in proc.stderr and "FAIL" in proc.stderr
    opened = report["missing"]["busybox-static"][0]
    assert opened["path"] == os.path.realpath(busybox) and opened["comm"] == "busybox"
    # Named, it passes; and the command's own status wins over the verdict.
    proc, report = _run_audit(["busybox-static"], busybox, "true", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert report["missing"] == {}
    proc, _ = _run_audit(["busybox-static"], busybox, "false", tmp_path=tmp_path)
    assert proc.returncode == 1


def test_recorder_ignores_other_processes_on_the_host(as_root, tmp_path):
    # jq is installed by set-up; run it outside the audited command, while it runs.
    jq = shutil.which("jq")
    require(jq is not None, "jq is not installed (scripts/setup.sh installs it)")
    outside = subprocess.Popen(["sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do %s -n 1 >/dev/null; "
                                "sleep 0.1; done" % jq])
    try:
        proc, report = _run_audit(["busybox-static"], "sleep", "1.5", tmp_path=tmp_path)
    finally:
        outside.wait()
    assert proc.returncode == 0, proc.stderr
    assert "jq" not in report["packages_used"] and "libjq1" not in report["packages_used"]


def test_audit_catches_vagrant_without_its_provider_plugin(as_root, tmp_path):
    """The case issue 15 found: vagrant validate works only with vagrant-libvirt
    installed, which apt brings only as a Recommends of vagrant."""
    vagrant = shutil.which("vagrant")
    require(vagrant is not None, "vagrant is not installed (scripts/setup.sh test installs it)")
    env_argv = ["env", "VAGRANT_CHECKPOINT_DISABLE=1", vagrant, "validate"]
    proc, report = _run_audit(["vagrant", "ruby"], *env_argv, tmp_path=tmp_path, cwd=REPO)
    assert "validated successfully" in proc.stdout, proc.stdout + proc.stderr
    assert proc.returncode == 3 and "vagrant-libvirt" in report["missing"], proc.stderr
    proc, report = _run_audit(["vagrant", "ruby", "vagrant-libvirt"], *env_argv, tmp_path=tmp_path, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "vagrant-libvirt" in report["packages_used"]
