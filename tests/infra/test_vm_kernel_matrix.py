"""The kernel matrix: the tracer's kernel tests also pass on Debian 12's Linux 6.1.

scripts/vm-kernel-matrix.sh builds (once, cached) a Debian 12 image with Debian's own
kernel, boots it under qemu's software emulation and runs every `kernel`-marked test
inside.  These tests run that script for real and check what the VM reported; the
counts are read from the junit report the VM wrote, not from the script's summary.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from tests.conftest import REPO, require

SCRIPT = os.path.join(REPO, "scripts", "vm-kernel-matrix.sh")
VM_SCRIPTS = [SCRIPT, os.path.join(REPO, "scripts", "vagrant-box.sh")] + [
    os.path.join(REPO, "scripts", "vm", f)
    for f in ("build-rootfs.sh", "build-image.sh", "build-box.sh", "cache.sh", "guest-run.sh", "prefetch.sh")]
# A cold image build (~3 min) plus the VM leg's own hard limit (15 min) plus slack.
WHOLE_RUN_TIMEOUT = 30 * 60


def require_vm_tools():
    require(os.geteuid() == 0, "the VM leg needs root (debootstrap, chroot)")
    for tool in ("qemu-system-x86_64", "debootstrap", "mkfs.ext4"):
        require(shutil.which(tool) is not None,
                "%s is missing (apt-get install qemu-system-x86 qemu-utils debootstrap e2fsprogs; "
                "scripts/setup.sh test installs them)" % tool)


def run_script(results_dir, *args, env=None, timeout=WHOLE_RUN_TIMEOUT):
    proc = subprocess.run(["bash", SCRIPT, "--results-dir", str(results_dir), *args],
                          capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))
    # The VM's own output is the first thing anyone needs when this fails in CI.
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr[-30000:])
    return proc


def junit_counts(path):
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    counts["names"] = [c.get("classname", "") + "::" + c.get("name", "") for c in root.iter("testcase")]
    return counts


@pytest.fixture(scope="module")
def vm_leg(tmp_path_factory):
    require_vm_tools()
    out = tmp_path_factory.mktemp("vm-matrix")
    proc = run_script(out)
    summary_path = out / "summary.json"
    assert summary_path.exists(), "the script wrote no summary.json; its output is above"
    return proc, json.loads(summary_path.read_text()), out


@pytest.mark.vm
def test_vm_leg_passes(vm_leg):
    proc, summary, _ = vm_leg
    assert proc.returncode == 0, "VM leg %s: %s" % (summary["status"], summary["reason"])
    assert summary["status"] == "ok"


@pytest.mark.vm
def test_vm_ran_the_kernel_tests_and_none_failed(vm_leg):
    _, _, out = vm_leg
    counts = junit_counts(out / "junit.xml")
    ran = counts["tests"] - counts["skipped"]
    assert ran > 0, "the VM ran no test: %r" % counts
    assert counts["failures"] == 0 and counts["errors"] == 0, counts
    # The leg exists for the tracer's real-kernel tests: some must be among those run.
    assert any("test_kernel" in n for n in counts["names"]), counts["names"]


@pytest.mark.vm
def test_vm_kernel_is_debians_6_1_not_the_hosts(vm_leg):
    _, summary, out = vm_leg
    inside = (out / "kernel-release").read_text().strip()
    assert re.fullmatch(r"6\.1\.\d+-\d+-amd64", inside), inside
    assert inside != os.uname().release
    assert summary["kernel_release"] == inside == summary["image_kernel_release"]


@pytest.mark.vm
def test_vm_leg_that_selects_no_test_fails(vm_leg, tmp_path):
    """A VM run with nothing to run must not look like a pass."""
    project = tmp_path / "project"
    shutil.copytree(REPO, project, ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info",
                                                                 ".pytest_cache", ".hypothesis", "node_modules"))
    for test_file in (project / "tests").rglob("test_*.py"):
        test_file.unlink()
    proc = run_script(tmp_path / "out", "--project", str(project), timeout=15 * 60)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert proc.returncode != 0
    assert summary["status"] == "failed" and "no test" in summary["reason"], summary


@pytest.mark.vm
def test_vm_leg_over_its_time_limit_is_killed_and_fails(vm_leg, tmp_path):
    """The hard limit holds: qemu is killed and the run reports a timeout."""
    proc = run_script(tmp_path, env={"NSGRAPH_VM_TIMEOUT": "5"}, timeout=5 * 60)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert proc.returncode != 0
    assert summary["status"] == "timeout", summary
    assert summary["vm_seconds"] < 60, summary


def test_vm_scripts_pass_shellcheck():
    shellcheck = shutil.which("shellcheck")
    require(shellcheck is not None, "shellcheck is missing (apt-get install shellcheck)")
    proc = subprocess.run([shellcheck, "-x", *VM_SCRIPTS], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_vm_script_rejects_bad_usage():
    proc = subprocess.run(["bash", SCRIPT, "--no-such-option"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "unknown argument" in proc.stderr
