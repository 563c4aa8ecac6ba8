"""The CI package audit (.ci/package_audit.py) for real: its fanotify recorder in a
mount namespace of its own, with real commands and the real dpkg database (root).

These are the proof that CI catches what issue 15 found: a test that only passes
because the machine happens to have a package (vagrant-libvirt, which `vagrant`
merely recommends) fails the audit unless set-up names that package.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, require

AUDIT_PATH = os.path.join(REPO, ".ci", "package_audit.py")


def _run_audit(named, *argv, tmp_path, cwd=None):
    report = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, AUDIT_PATH, "run", "--named", " ".join(named),
                           "--report", str(report), "--", *argv],
                          capture_output=True, text=True, timeout=300, cwd=cwd)
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
