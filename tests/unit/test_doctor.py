"""`nsgraph doctor`'s decisions (tracer/commands/doctor.py), from the inputs each check reads.

The checks that read the machine take what they read as arguments (a release string,
a modules directory, a kernel config file, BTF's feature map), so every branch runs
here, on files made in tmp_path.  tests/kernel/test_kernel_events.py runs the whole
command as root on the real machine.
"""

from __future__ import annotations

import gzip
import io
import json
import os

import pytest

from tracer.commands import doctor
from tracer.commands.doctor import FAIL, INFO, OK, WARN, Check
from tracer.exitcodes import EXIT_FAILURE, EXIT_OK


@pytest.mark.parametrize("release,status", [
    ("6.18.44-fc-v1098", OK), ("5.5.0", OK), ("6.1.0-28-amd64", OK), ("5.10", OK),
    ("5.4.0-150-generic", FAIL), ("4.19.0-27-amd64", FAIL),
    ("weird", WARN), ("6", WARN), ("", OK),   # "" means the running kernel's, which passed to get here
])
def test_kernel_release(release, status):
    check = doctor.check_kernel(release)
    assert check.status == status, check
    if status == FAIL:
        assert "5.5 or newer" in check.detail and check.fix


def config_file(tmp_path, text, gz=False):
    path = tmp_path / ("config.gz" if gz else "config")
    if gz:
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return str(path)


def test_kernel_config_values(tmp_path):
    text = "CONFIG_BPF=y\n# CONFIG_KPROBES is not set\nCONFIG_HZ=250\nCONFIG_X=m\n"
    for gz in (False, True):
        path = config_file(tmp_path, text, gz)
        assert doctor.kernel_config("CONFIG_BPF", [path]) == "y"
        assert doctor.kernel_config("CONFIG_KPROBES", [path]) == "n"
        assert doctor.kernel_config("CONFIG_HZ", [path]) == "250"
        assert doctor.kernel_config("CONFIG_X", [path]) == "m"
        # absent from a readable config: not built in
        assert doctor.kernel_config("CONFIG_NOT_THERE", [path]) == "n"
    # a prefix of another option is not that option
    assert doctor.kernel_config("CONFIG_B", [config_file(tmp_path, "CONFIG_BPF=y\n")]) == "n"


def test_kernel_config_falls_through_unreadable_files(tmp_path):
    good = config_file(tmp_path, "CONFIG_KPROBES=y\n")
    missing = str(tmp_path / "nope.gz")
    corrupt = tmp_path / "corrupt.gz"
    corrupt.write_bytes(b"\x1f\x8b\x08\x00garbage")           # gzip magic, then nonsense
    truncated = tmp_path / "truncated.gz"
    whole = gzip.compress(("".join("CONFIG_OPTION_%d=y\n" % i for i in range(5000)) + "CONFIG_KPROBES=y\n").encode())
    truncated.write_bytes(whole[: len(whole) // 2])          # cut before the line we want
    for bad in (missing, str(corrupt), str(truncated)):
        assert doctor.kernel_config("CONFIG_KPROBES", [bad, good]) == "y"
        assert doctor.kernel_config("CONFIG_KPROBES", [bad]) is None


def test_headers(tmp_path):
    modules = tmp_path / "modules"
    release = "6.18.44-test"
    check = doctor.check_headers(release, str(modules))
    assert check.status == FAIL and "linux-headers-%s" % release in check.fix
    # the distribution's own headers for this kernel
    own = tmp_path / "usr-src" / ("linux-headers-" + release)
    (own / "include").mkdir(parents=True)
    (modules / release).mkdir(parents=True)
    os.symlink(own, modules / release / "build")
    check = doctor.check_headers(release, str(modules))
    assert check.status == OK and "another kernel" not in check.detail
    # another kernel's headers linked in (what scripts/setup.sh does where none exist): fine, and said
    os.unlink(modules / release / "build")
    other = tmp_path / "usr-src" / "linux-headers-6.1.0-57-amd64"
    (other / "include").mkdir(parents=True)
    os.symlink(other, modules / release / "build")
    check = doctor.check_headers(release, str(modules))
    assert check.status == OK and "another kernel's headers" in check.detail and str(other) in check.detail
    # a build link to nowhere
    os.unlink(modules / release / "build")
    os.symlink(tmp_path / "gone", modules / release / "build")
    assert doctor.check_headers(release, str(modules)).status == FAIL


def test_feature_lines():
    assert "uses the ring buffer" in doctor.ringbuf_check(True).detail
    assert "a perf buffer" in doctor.ringbuf_check(False).detail
    with_all = {c.name: c.detail for c in doctor.layout_feature_checks(
        {"NSG_HAVE_NS_ID": True, "NSG_HAVE_TIME_NS": True, "NSG_HAVE_CGROUP_NS": True})}
    assert with_all["feature ns_id"].startswith("ns_common.ns_id present")
    assert with_all["feature time"] == "time namespaces traced"
    assert with_all["feature cgroup"] == "cgroup namespaces traced"
    old = {c.name: c.detail for c in doctor.layout_feature_checks({"NSG_HAVE_NS_ID": False})}
    assert old["feature ns_id"].startswith("ns_common.ns_id absent")
    assert old["feature time"] == "time namespaces not in this kernel"
    assert "not in this kernel (CONFIG_KPROBES off)" in doctor.kprobes_check("n", True).detail
    assert "kprobes available" in doctor.kprobes_check("y", False).detail
    assert "unknown (no readable kernel config); kprobe_events exists" in doctor.kprobes_check(None, True).detail
    assert doctor.kprobes_check(None, False).detail.startswith("kprobes unknown (no readable kernel config);")
    assert "supported by the kernel config" in doctor.fentry_check("y").detail
    assert "not supported" in doctor.fentry_check("n").detail
    assert "support unknown" in doctor.fentry_check(None).detail
    for check in (doctor.ringbuf_check(True), doctor.kprobes_check("y", True), doctor.fentry_check("y")):
        assert check.status == INFO and check.detail.count("; ") == 1


CHECKS = [Check("privileges", OK, "uid 0"), Check("docker", WARN, "not reachable", "start it"),
          Check("feature ringbuf", INFO, "available")]


def test_report_text_and_verdict():
    out, err = io.StringIO(), io.StringIO()
    assert doctor.report(CHECKS, as_json=False, out=out, err=err) == EXIT_OK
    lines = out.getvalue().splitlines()
    assert lines[0] == "[OK  ] privileges         uid 0"
    assert lines[1] == "[WARN] docker             not reachable"
    assert lines[2].split() == ["fix:", "start", "it"] and lines[2].index("fix:") == lines[1].index("not")
    assert err.getvalue() == "tracing can work\n"
    out, err = io.StringIO(), io.StringIO()
    failing = CHECKS + [Check("btf", FAIL, "no BTF", "use a kernel with BTF"), Check("bcc", FAIL, "no bcc", "x")]
    assert doctor.report(failing, as_json=False, out=out, err=err) == EXIT_FAILURE
    assert err.getvalue() == "tracing cannot work: 2 check(s) failed\n"


def test_report_json_lines():
    out, err = io.StringIO(), io.StringIO()
    code = doctor.report(CHECKS + [Check("btf", FAIL, "no BTF", "fix it")], as_json=True, out=out, err=err)
    assert code == EXIT_FAILURE and err.getvalue() == ""
    objects = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [o["name"] for o in objects] == ["privileges", "docker", "feature ringbuf", "btf"]
    assert all(set(o) == {"name", "status", "detail", "fix"} for o in objects)
    assert objects[-1] == {"name": "btf", "status": "FAIL", "detail": "no BTF", "fix": "fix it"}
