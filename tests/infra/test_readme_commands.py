"""Every command the README and the `--help` texts show, run as written (root).

The commands are extracted from README.md (```sh blocks, `$ ` lines of ```console
blocks, inline code that starts like a command) and from the examples of
`nsgraph --help`, `nsgraph COMMAND --help` and `scripts/setup.sh --help`.  Each one
must be classified in COMMANDS below: run (and its output checked), or not run,
with the reason.  A new example nobody classified fails test_every_command_is_classified,
so the documentation cannot drift from what was tried.

How "as written" is kept on a shared or fresh machine:
- `sudo` runs the command as root; where no sudo is installed and we are root (a
  minimal Debian), the README says to leave it out, and a shell function stands in;
- `nsgraph` is found on the PATH, as set-up promises (this checkout's .venv/bin first,
  so that another set-up's /usr/local/bin link on a shared machine is not what runs;
  test_setup_links_nsgraph_onto_the_path checks the link itself);
- dashboards run in a network namespace of their own, so port 5000 is theirs, and
  are stopped with Ctrl-C (SIGINT) once they answer; so are `trace` and `record`;
- files the examples write (ns.svg, trace.jsonl...) land in a temporary directory.
Outputs are compared with the README's samples by shape: the trace header and the
DETAILS column, doctor's check names, the snapshot header and rows, serve's lines.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from typing import Callable, Optional

import pytest

from conftest import REPO, require

README = os.path.join(REPO, "README.md")
VENV_BIN = os.path.join(REPO, ".venv", "bin")
SETUP = os.path.join(REPO, "scripts", "setup.sh")


# -- extraction -----------------------------------------------------------------------------

COMMAND_START = re.compile(r"^(sudo |nsgraph |scripts/|\.venv/|vagrant |NSGRAPH_\w+=|ssh |curl |PYTEST_ARGS=|IMG=)")


def readme_blocks(text: str):
    """(kind, command, expected output lines) for every command in README text."""
    out = []
    fence, console = None, None
    for line in text.splitlines():
        m = re.match(r"^```(\w*)", line)
        if m:
            if fence is None:
                fence = m.group(1) or "plain"
            else:
                if console is not None:
                    out.append(console)
                fence, console = None, None
            continue
        if fence == "sh":
            cmd = re.sub(r"\s+#.*$", "", line).strip()
            if cmd and not cmd.startswith("#"):
                out.append(("sh", cmd, []))
        elif fence == "console":
            if line.startswith("$ "):
                if console is not None:
                    out.append(console)
                console = ("console", line[2:].strip(), [])
            elif console is not None:
                console[2].append(line)
        elif fence is None:
            for span in re.findall(r"`([^`]+)`", line):
                if COMMAND_START.match(span):
                    out.append(("inline", span, []))
    return out


def help_examples(text: str):
    """Example commands of a --help text: the indented lines after "examples:"."""
    out = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip() != "examples:":
            continue
        for example in lines[i + 1:]:
            if not example.startswith("  ") or not example.strip():
                break
            cmd = re.sub(r"\s+#.*$", "", example).strip()
            if COMMAND_START.match(cmd):
                out.append(cmd)
    return out


def helps():
    """command -> its --help text, as a user sees it."""
    env = clean_env()
    texts = {"nsgraph": run_plain(["nsgraph", "--help"], env).stdout}
    for name in re.findall(r"^    ([a-z][a-z-]+)\s", texts["nsgraph"], re.M):
        texts["nsgraph " + name] = run_plain(["nsgraph", name, "--help"], env).stdout
    texts["scripts/setup.sh"] = run_plain(["bash", SETUP, "--help"], env).stdout
    return texts


def setup_usage(text: str):
    return [line.strip().split("  ")[0].strip() for line in text.splitlines()
            if line.strip().startswith("scripts/setup.sh ")]


def all_commands():
    with open(README) as f:
        found = {cmd for _kind, cmd, _out in readme_blocks(f.read())}
    for name, text in helps().items():
        found.update(help_examples(text))
        if name == "scripts/setup.sh":
            found.update(setup_usage(text))
    return found


# -- running ----------------------------------------------------------------------------------

def clean_env() -> dict:
    """The environment of a user's shell: no CI knobs of the run that hosts this test."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NSGRAPH_", "PYTEST", "COV_")) and k not in ("CI",)}
    env["PATH"] = VENV_BIN + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    return env


def run_plain(argv, env, **kw):
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, **kw)


PRELUDE = ("if ! command -v sudo >/dev/null 2>&1 && [ \"$(id -u)\" = 0 ]; then "
           "sudo() { env \"$@\"; }; fi\n")


@dataclass
class Ran:
    code: int
    out: str        # stdout and stderr, interleaved as a terminal shows them
    cwd: str


def shell(cmd: str, cwd: str, *, netns: bool = False, until: Optional[str] = None, after: float = 0.0,
          then: Optional[Callable[[str], None]] = None, timeout: float = 180.0) -> Ran:
    """Run cmd with bash as a user would type it.  With `until`, wait for that text in the
    output, call then(output so far), wait `after` seconds more and press Ctrl-C."""
    argv = ["bash", "-c", PRELUDE + cmd]
    if netns:
        argv = ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"] + argv
    proc = subprocess.Popen(argv, cwd=cwd, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    if until is None:
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            raise AssertionError("%r did not finish within %.0f s:\n%s" % (cmd, timeout, out[-3000:]))
        return Ran(proc.returncode, out, cwd)
    import threading
    chunks = []
    reader = threading.Thread(target=lambda: chunks.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    try:
        while until not in "".join(chunks):
            if time.monotonic() > deadline or proc.poll() is not None:
                reader.join(5)
                raise AssertionError("%r never printed %r (exit %s):\n%s"
                                     % (cmd, until, proc.poll(), "".join(chunks)[-3000:]))
            time.sleep(0.05)
        if then is not None:
            then("".join(chunks), proc.pid)
        time.sleep(after)
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
        reader.join(10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    out = "".join(chunks)
    return Ran(proc.returncode, out, cwd)


def in_netns_of(pid: int, argv: list) -> subprocess.CompletedProcess:
    return subprocess.run(["nsenter", "--net=/proc/%d/ns/net" % pid] + argv, capture_output=True, text=True,
                          timeout=30)


def http_get(pid: int, url: str, headers: Optional[dict] = None) -> tuple:
    """(status, body) of GET url from inside the network namespace of pid."""
    script = ("import sys, urllib.request, urllib.error\n"
              "req = urllib.request.Request(sys.argv[1], headers=dict(a.split(': ', 1) for a in sys.argv[2:]))\n"
              "try:\n    r = urllib.request.urlopen(req, timeout=10); print(r.status); print(r.read().decode())\n"
              "except urllib.error.HTTPError as e:\n    print(e.code); print(e.read().decode())\n")
    proc = in_netns_of(pid, [sys.executable, "-c", script, url] + ["%s: %s" % kv for kv in (headers or {}).items()])
    assert proc.returncode == 0, proc.stderr
    status, _, body = proc.stdout.partition("\n")
    return int(status), body


def trigger_events(_out, _pid):
    subprocess.run(["unshare", "--uts", "--net", "true"], check=True)
    subprocess.run(["unshare", "--pid", "--fork", "true"], check=True)


# -- what each command must do ----------------------------------------------------------------

@dataclass
class Run:
    check: Callable[[Ran], None]
    cwd: str = "tmp"            # "tmp" (files it writes land there) or "repo"
    netns: bool = False
    until: Optional[str] = None
    after: float = 1.0
    then: Optional[Callable] = None


@dataclass
class NotRun:
    reason: str


TRACING = "Tracing namespace events... Hit Ctrl-C to end."
SERVING = "nsgraph: running"
RECORDING = "nsgraph record: running"


def ok(ran: Ran) -> None:
    assert ran.code == 0, ran.out[-3000:]


def readme_sample(command: str) -> list:
    with open(README) as f:
        for kind, cmd, lines in readme_blocks(f.read()):
            if kind == "console" and cmd == command:
                return lines
    raise AssertionError("no ```console sample of %r in README.md" % command)


def check_trace_columns(ran: Ran, sample_of: Optional[str] = "sudo nsgraph trace") -> None:
    ok(ran)
    lines = [line for line in ran.out.splitlines() if line and line != TRACING]
    header = lines[0]
    assert header.split() == ["TIME", "PID", "COMM", "CONTAINER", "EVENT", "NS", "DETAILS"], header
    if sample_of:
        assert readme_sample(sample_of)[0] == header, "README's trace header is not the real one"
    column = header.index("DETAILS")
    events = [line for line in lines[1:] if re.match(r"^\d\d:\d\d:\d\d\.\d{6} ", line)]
    assert events, ran.out
    for line in events:
        assert line[column - 1] == " " and line[column] != " ", \
            "DETAILS out of its column:\n%s\n%s" % (header, line)
    if sample_of:
        for line in readme_sample(sample_of):
            if re.match(r"^\d\d:\d\d:\d\d\.\d{6} ", line):
                assert line[column - 1] == " " and line[column:].startswith(("new", "joined", "no ", "failed")), \
                    "README sample row out of the real column layout: %r" % line
    assert re.search(r"^\d+ events seen, \d+ shown, \d+ lost", ran.out, re.M), ran.out[-500:]


def check_trace_json(ran: Ran) -> None:
    ok(ran)
    events = [json.loads(line) for line in ran.out.splitlines() if line.startswith("{")]
    assert events, ran.out[-2000:]
    documented = readme_json_keys()
    for event in events:
        undocumented = set(event) - documented
        assert not undocumented, "keys the README's table lacks: %s" % sorted(undocumented)


def readme_json_keys() -> set:
    with open(README) as f:
        text = f.read()
    table = text[text.index("| key | meaning |"):]
    table = table[:table.index("\n\n")]
    keys = set()
    for row in table.splitlines()[2:]:
        keys.update(re.findall(r"`([a-z_]+)`", row.split("|")[1]))
    return keys


def check_doctor(ran: Ran) -> None:
    ok(ran)
    real = re.findall(r"^\[(OK  |WARN|FAIL|INFO)\] (\S+(?: \S+)?)\s{2,}", ran.out, re.M)
    names = [name.strip() for _status, name in real]
    sample = [re.match(r"^\[[A-Z ]{4}\] (\S+(?: \S+)?)\s{2,}", line).group(1).strip()
              for line in readme_sample("sudo nsgraph doctor") if line.startswith("[")]
    assert names == sample, "doctor's checks are %s; the README shows %s" % (names, sample)


def check_doctor_json(ran: Ran) -> None:
    ok(ran)
    checks = [json.loads(line) for line in ran.out.splitlines() if line.startswith("{")]
    assert checks and all(set(c) >= {"name", "status", "detail", "fix"} for c in checks), ran.out


def snapshot_rows(text: str) -> list:
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("(skipped")]
    assert lines[0].split() == ["NS", "TYPE", "NPROCS", "PID", "USER", "CONTAINER", "COMMAND"], lines[0]
    rows = []
    for line in lines[1:]:
        m = re.match(r"^( *)(└─)?(\d+) +(\w+) +(\d+) +(\S+) +(\S+) +(\S+) +(.+)$", line)
        assert m, "not a snapshot row: %r" % line
        rows.append(m.group(4))
    return rows


def check_snapshot(types: Optional[set] = None, sample_of: Optional[str] = None):
    def check(ran: Ran) -> None:
        ok(ran)
        got = snapshot_rows(ran.out)
        assert got
        if types:
            assert set(got) == types, got
        if sample_of:
            sample = snapshot_rows("\n".join(readme_sample(sample_of)))
            assert set(sample) <= set(got)
    return check


def check_svg(name: str):
    def check(ran: Ran) -> None:
        ok(ran)
        with open(os.path.join(ran.cwd, name)) as f:
            head = f.read(400)
        assert "<svg" in head, head
    return check


def check_jq(ran: Ran) -> None:
    ok(ran)
    text = ran.out.strip()
    if text:                    # one object per namespace in a container, if any runs
        decoder, pos = json.JSONDecoder(), 0
        while pos < len(text):
            obj, end = decoder.raw_decode(text, pos)
            assert obj["container"] is not None
            pos = end
            while pos < len(text) and text[pos].isspace():
                pos += 1


def serve_answers(port: int = 5000, token_file: Optional[str] = None, read_only: Optional[bool] = None):
    def then(out: str, pid: int) -> None:
        url = re.search(r"^(http://[0-9.]+:%d/\?token=\S+)$" % port, out, re.M)
        assert url, out
        token = url.group(1).split("token=")[1]
        if token_file:
            with open(token_file) as f:
                assert f.read().strip() == token
        status, body = http_get(pid, "http://127.0.0.1:%d/api/demos" % port, {"Authorization": "Bearer " + token})
        assert status == 200, body
        if read_only is not None:
            assert all(d["available"] is (not read_only) for d in json.loads(body)["scenarios"]
                       if d["kind"] == "util-linux"), body
        status, _ = http_get(pid, "http://127.0.0.1:%d/metrics" % port)
        assert status == 401, "/metrics answered without the token"
    return then


def check_serve_sample(ran: Ran) -> None:
    ok(ran)
    real = [line for line in ran.out.splitlines() if line.startswith(("http://", "nsgraph: "))]
    sample = readme_sample("sudo nsgraph serve")

    def shape(line: str) -> str:
        return re.sub(r"\d+(\.\d+)? s\b", "N s", re.sub(r"token=\S+", "token=TOKEN", line))
    assert [shape(x) for x in real[:len(sample)]] == [shape(x) for x in sample], (real, sample)


def check_setup_test_ran_only(path: str = "tests/unit/test_decode.py"):
    def check(ran: Ran) -> None:
        ok(ran)
        files = re.findall(r"^(tests/\S+\.py) ", ran.out, re.M)
        assert files == [path], "pytest ran %s, not only %s:\n%s" % (files, path, ran.out[-2000:])
        assert re.search(r"\d+ passed", ran.out), ran.out[-2000:]
    return check


def check_setup_run(port: int, read_only: bool):
    return Run(ok, cwd="repo", netns=True, until=SERVING, then=serve_answers(port, read_only=read_only))


def check_help(ran: Ran) -> None:
    ok(ran)
    assert "set -euo pipefail" not in ran.out and "scripts/setup.sh test" in ran.out, ran.out


def check_serve_help(ran: Ran) -> None:
    ok(ran)
    assert "--public-metrics" in ran.out and "--token-file" in ran.out, ran.out


def host_pid() -> int:
    """pid 1, or kthreadd (pid 2) where pid 1's links are unreadable (pid 1 of a sandbox
    that owns another user namespace): the host as `inspect --host` must define it."""
    try:
        os.stat("/proc/1/ns/uts")
        return 1
    except PermissionError:
        return 2


def host_ns_inode(ns_type: str) -> int:
    return os.stat("/proc/%d/ns/%s" % (host_pid(), ns_type)).st_ino


def host_hostname() -> str:
    return subprocess.run(["nsenter", "-t", str(host_pid()), "-u", "hostname"], capture_output=True,
                          text=True, check=True, timeout=30).stdout.strip()


def check_inspect_host(ran: Ran) -> None:
    """`inspect --host --type uts,net`: pid 1's uts and net namespaces, in that order, and
    the hostname the host's uts namespace really has."""
    ok(ran)
    heads = re.findall(r"^(\w+):\[(\d+)\]  host\b", ran.out, re.M)
    assert heads == [("uts", str(host_ns_inode("uts"))), ("net", str(host_ns_inode("net")))], ran.out
    assert re.search(r"^  hostname +%s$" % re.escape(host_hostname()), ran.out, re.M), ran.out


def check_inspect_example(missing: str):
    """A --help example that names a namespace or container by example: it either exists
    here (exit 0, namespaces shown) or does not (exit 3, one line naming it, no traceback)."""
    def check(ran: Ran) -> None:
        if ran.code == 3:
            lines = ran.out.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("nsgraph inspect: no ") and missing in lines[0], \
                ran.out
        else:
            ok(ran)
            assert re.search(r"^(  == \w+ ==|\{|\w+:\[\d+\]  )", ran.out, re.M), ran.out
    return check


VAGRANT_UP = ("tests/infra/test_vagrant_up.py runs it for real, in a libvirt sandbox with the local test "
              "box (scripts/vagrant-box.sh)")
NO_VM = ("needs a hypervisor and a Vagrant box download (no network here); "
         "tests/infra/test_vagrant.py checks the Vagrantfile with vagrant and ruby themselves")
MENTION = "names a command or file in prose, not a command line"

COMMANDS = {
    # README: set-up
    "sudo scripts/setup.sh run": check_setup_run(5000, read_only=False),
    "sudo scripts/setup.sh run -- --port 8080 --read-only": check_setup_run(8080, read_only=True),
    "sudo scripts/setup.sh test": NotRun("the command CI itself runs (.ci/run); run here it would run this test again"),
    "sudo scripts/setup.sh test -- tests/unit/test_decode.py -x": Run(check_setup_test_ran_only(), cwd="repo"),
    'sudo PYTEST_ARGS="tests/unit/test_decode.py" scripts/setup.sh test': Run(check_setup_test_ran_only(),
                                                                               cwd="repo"),
    "scripts/setup.sh install": Run(ok, cwd="repo"),
    "scripts/setup.sh --help": Run(check_help, cwd="repo"),
    "scripts/setup.sh": NotRun(MENTION),
    "scripts/setup.sh run [-- ARGS]": NotRun("synopsis of --help; its forms are run above"),
    "scripts/setup.sh test [-- ARGS]": NotRun("synopsis of --help; its forms are run above"),
    ".venv/bin/nsgraph": NotRun(MENTION),
    ".venv/bin/python -m pytest tests/unit": NotRun("tests/unit is part of this very suite; here it would "
                                                     "only run twice"),
    "ssh -L 5000:127.0.0.1:5000 host": NotRun("needs a remote host to log in to"),
    "nsgraph COMMAND --help": NotRun("a pattern: every `nsgraph COMMAND --help` is read by this test"),
    "nsgraph serve --help": Run(check_serve_help),
    # README: commands
    "nsgraph trace": Run(check_trace_columns, until=TRACING, then=trigger_events),
    "sudo nsgraph trace": Run(check_trace_columns, until=TRACING, then=trigger_events),
    "nsgraph doctor": Run(check_doctor),
    "sudo nsgraph doctor": Run(check_doctor),
    "nsgraph snapshot": Run(check_snapshot()),
    "sudo nsgraph snapshot --type pid,net": Run(check_snapshot({"pid", "net"}, "sudo nsgraph snapshot --type pid,net")),
    "nsgraph snapshot --dot | dot -Tsvg > ns.svg": Run(check_svg("ns.svg")),
    "nsgraph serve": Run(ok, netns=True, until=SERVING, then=serve_answers()),
    "sudo nsgraph serve": Run(check_serve_sample, netns=True, until=SERVING, then=serve_answers()),
    "nsgraph demo-image": Run(ok),
    "nsgraph record": NotRun(MENTION + " (its forms, from `nsgraph record --help`, are run)"),
    "nsgraph replay": NotRun(MENTION + " (its forms, from `nsgraph replay --help`, are run)"),
    "nsgraph replay trace.jsonl [--until T] [--json|--dot]": NotRun("a synopsis; its forms are run"),
    'curl -s -H "Authorization: Bearer $(sudo cat /var/lib/nsgraph/token)" http://127.0.0.1:5000/metrics':
        NotRun("run by test_metrics_example, next to the dashboard it scrapes"),
    # README: the VM
    "vagrant plugin install vagrant-libvirt": NotRun("downloads from rubygems.org (no network here); set-up "
                                                     "installs Debian's vagrant-libvirt instead"),
    "vagrant up": NotRun(VAGRANT_UP),
    "vagrant reload": NotRun(NO_VM),
    "vagrant ssh -c 'sudo cat /var/lib/nsgraph/url'": NotRun(VAGRANT_UP),
    "NSGRAPH_HOST_PORT=5050 vagrant up": NotRun(NO_VM),
    "vagrant rsync && vagrant provision": NotRun(NO_VM),
    "vagrant ssh -c 'journalctl -u nsgraph -f'": NotRun(NO_VM),
    "NSGRAPH_MEMORY=8192 NSGRAPH_CPUS=4 vagrant up": NotRun(NO_VM),
    "vagrant destroy -f": NotRun(VAGRANT_UP),
    "NSGRAPH_LIBVIRT_DRIVER=kvm": NotRun(MENTION + "; tests/infra/test_vagrant.py checks both drivers' configuration"),
    "NSGRAPH_VAGRANT_BOX=<that name>": NotRun(MENTION + "; tests/infra/test_vagrant_up.py sets it"),
    "sudo scripts/vagrant-box.sh": NotRun(VAGRANT_UP),
    "scripts/provision.sh": NotRun(MENTION + "; tests/infra/test_provision.py runs it in containers"),
    # README: kernel matrix, benchmarks
    "sudo scripts/vm-kernel-matrix.sh": NotRun("tests/infra/test_vm_kernel_matrix.py runs it (minutes of qemu)"),
    "sudo scripts/vm-kernel-matrix.sh -- -k clone3 -s": NotRun("tests/infra/test_vm_kernel_matrix.py runs the script"),
    "scripts/vm/build-rootfs.sh": NotRun(MENTION),
    "scripts/vm/prefetch.sh": NotRun(MENTION + "; tests/conftest.py starts it in every run that boots a VM"),
    "NSGRAPH_VM_PREFETCH=0": NotRun(MENTION + "; tests/unit/test_vm_prefetch.py checks what it would build"),
    "NSGRAPH_PROVISION_MACHINES=plain,systemd": NotRun(MENTION + "; two more minutes of provisioning in a container, "
                                                       "which test_vagrant_up.py's real VM covers in CI"),
    "vagrant provision": NotRun(MENTION + "; tests/infra/test_vagrant_up.py runs it in the VM"),
    "scripts/vm/build-image.sh": NotRun(MENTION),
    "scripts/vm/packages.txt": NotRun(MENTION),
    # The fleet (README: Fleet): its own lane runs it end to end.
    'NSGRAPH_FLEET_RETENTION="--max-age 2d --max-bytes 50G"': NotRun("an environment setting of fleet-server, " + "tests/fleet/test_fleet_setup_sh.py runs fleet-server then fleet-agent in a container; here they would install system units on this host"),
    "nsgraph agent": NotRun(MENTION),
    "nsgraph agent --creds DIR": NotRun("tests/fleet/ runs the fleet for real (a 3-server TLS NATS cluster, agents on this host and in the 6.1 VM, the dashboard); here there is no central host or node bundle"),
    "nsgraph fleet init": NotRun(MENTION + "; " + "tests/fleet/ runs the fleet for real (a 3-server TLS NATS cluster, agents on this host and in the 6.1 VM, the dashboard); here there is no central host or node bundle"),
    "nsgraph fleet streams --replicas 3": NotRun("tests/fleet/ runs the fleet for real (a 3-server TLS NATS cluster, agents on this host and in the 6.1 VM, the dashboard); here there is no central host or node bundle"),
    "nsgraph serve --fleet": NotRun(MENTION),
    "nsgraph serve --fleet URL": NotRun("a synopsis; " + "tests/fleet/ runs the fleet for real (a 3-server TLS NATS cluster, agents on this host and in the 6.1 VM, the dashboard); here there is no central host or node bundle"),
    "nsgraph serve --fleet --fleet-creds /etc/nsgraph/fleet/dashboard": NotRun("tests/fleet/ runs the fleet for real (a 3-server TLS NATS cluster, agents on this host and in the 6.1 VM, the dashboard); here there is no central host or node bundle"),
    "nsgraph serve --fleet tls://nats.example:4222 --fleet-creds /etc/nsgraph/fleet/dashboard": NotRun("tests/fleet/ runs the fleet for real (a 3-server TLS NATS cluster, agents on this host and in the 6.1 VM, the dashboard); here there is no central host or node bundle"),
    "sudo .venv/bin/nsgraph agent --creds /etc/nsgraph/fleet/agent-web-1": NotRun("tests/fleet/ runs the fleet for real (a 3-server TLS NATS cluster, agents on this host and in the 6.1 VM, the dashboard); here there is no central host or node bundle"),
    "sudo nsgraph agent --creds /etc/nsgraph/fleet/agent-web-1": NotRun("tests/fleet/ runs the fleet for real (a 3-server TLS NATS cluster, agents on this host and in the 6.1 VM, the dashboard); here there is no central host or node bundle"),
    "sudo nsgraph agent --creds DIR --nats tls://n1:4222,tls://n2:4222,tls://n3:4222 --no-docker": NotRun("tests/fleet/ runs the fleet for real (a 3-server TLS NATS cluster, agents on this host and in the 6.1 VM, the dashboard); here there is no central host or node bundle"),
    "sudo nsgraph agent --node web-1 --nats tls://nats.example:4222 --creds /etc/nsgraph/fleet/agent-web-1": NotRun("tests/fleet/ runs the fleet for real (a 3-server TLS NATS cluster, agents on this host and in the 6.1 VM, the dashboard); here there is no central host or node bundle"),
    "sudo scp -r root@central:/etc/nsgraph/fleet/agent-web-1 /tmp/agent-web-1": NotRun("needs a central host to copy from"),
    "scripts/setup.sh fleet-server|fleet-agent|fleet-dashboard ...": NotRun("synopsis of --help; " + "tests/fleet/test_fleet_setup_sh.py runs fleet-server then fleet-agent in a container; here they would install system units on this host"),
    "sudo scripts/setup.sh fleet-server --server-name nats.example.org --node web-1 --node web-2": NotRun("tests/fleet/test_fleet_setup_sh.py runs fleet-server then fleet-agent in a container; here they would install system units on this host"),
    "sudo scripts/setup.sh fleet-agent /tmp/agent-web-1": NotRun("tests/fleet/test_fleet_setup_sh.py runs fleet-server then fleet-agent in a container; here they would install system units on this host"),
    "sudo scripts/setup.sh fleet-dashboard": NotRun("tests/fleet/test_fleet_setup_sh.py runs fleet-server then fleet-agent in a container; here they would install system units on this host"),
    # Issue 12's per-program cost.
    "nsgraph doctor --cost": NotRun("measures the BPF programs of a tracer that runs at the time; tests/kernel/test_probe_cost.py::test_doctor_cost_measures_a_running_tracer runs it against one"),
    "sudo nsgraph doctor --cost": NotRun("measures the BPF programs of a tracer that runs at the time; tests/kernel/test_probe_cost.py::test_doctor_cost_measures_a_running_tracer runs it against one"),
    "sudo .venv/bin/nsgraph doctor --cost": NotRun("measures the BPF programs of a tracer that runs at the time; tests/kernel/test_probe_cost.py::test_doctor_cost_measures_a_running_tracer runs it against one"),
    "sudo nsgraph doctor --cost --seconds 30 --json": NotRun("measures the BPF programs of a tracer that runs at the time; tests/kernel/test_probe_cost.py::test_doctor_cost_measures_a_running_tracer runs it against one"),
    "scripts/nsgraph.service": NotRun(MENTION + "; tests/infra/test_provision.py runs the unit under systemd"),
    "sudo .venv/bin/python scripts/dashboard_screenshots.py": NotRun("makes the README's screenshots (a serve with 50 containers, minutes); tests/browser covers the same pages"),
    "sudo .venv/bin/python bench/bench_tracer.py": NotRun("a benchmark: minutes, and meaningful only on a quiet host"),
    "nsgraph trace --json > /dev/null": NotRun("names bench_tracer.py's stage 3 in the benchmark table "
                                                "(`nsgraph trace --json` itself is run above)"),
    "NSGRAPH_TRACEMALLOC=PREFIX": NotRun("an environment variable named in prose (a diagnosis aid of serve)"),
    # nsgraph --help
    "nsgraph trace --json --procs": Run(check_trace_json, until=TRACING, then=trigger_events),
    # nsgraph trace --help
    "nsgraph trace --json": Run(check_trace_json, until=TRACING, then=trigger_events),
    "nsgraph trace --type net,pid": Run(lambda r: check_trace_columns(r, None), until=TRACING, then=trigger_events),
    "nsgraph trace --comm 'runc:[1:CHILD]'": Run(ok, until=TRACING),
    "nsgraph trace --pid 1234": Run(ok, until=TRACING),
    "nsgraph trace --container myapp": Run(ok, until=TRACING),
    "nsgraph trace --procs": Run(lambda r: check_trace_columns(r, None), until=TRACING, then=trigger_events),
    "nsgraph trace --housekeeping": Run(ok, until=TRACING),
    "nsgraph trace --duration 10 --json > events.jsonl": Run(ok),
    # nsgraph snapshot --help
    "nsgraph snapshot --type net": Run(check_snapshot({"net"})),
    "nsgraph snapshot --type pid,net": Run(check_snapshot({"pid", "net"})),
    "nsgraph snapshot --json | jq '.namespaces[] | select(.container != null)'": Run(check_jq),
    # nsgraph serve --help
    "sudo nsgraph serve --port 8080 --read-only": Run(ok, netns=True, until=SERVING,
                                                       then=serve_answers(8080, read_only=True)),
    "sudo nsgraph serve --token-file /var/lib/nsgraph/token --db /var/lib/nsgraph/events.db":
        Run(ok, netns=True, until=SERVING, then=serve_answers(token_file="/var/lib/nsgraph/token")),
    "sudo nsgraph serve --host 0.0.0.0 --allow-remote --token-file /var/lib/nsgraph/token":
        Run(ok, netns=True, until=SERVING, then=serve_answers(token_file="/var/lib/nsgraph/token")),
    # nsgraph record / replay --help (in this order: replay reads what record wrote)
    "sudo nsgraph record trace.jsonl": Run(ok, until=RECORDING, after=2.0),
    "sudo nsgraph record trace.jsonl --duration 60": Run(ok, until=RECORDING, after=2.0),
    "nsgraph replay trace.jsonl": Run(check_snapshot()),
    "nsgraph replay trace.jsonl --json > graph.json": Run(ok),
    # 1764470000 (2025-11-30) predates the recording: the graph as recording began
    "nsgraph replay trace.jsonl --until 1764470000 --dot | dot -Tsvg > then.svg": Run(check_svg("then.svg")),
    # README: the inside view (the docker run / inspect pair is run by test_readme_inspect_example)
    "docker run -d --name nsgdoc-web nsgraph-demo:latest sleep 3600":
        NotRun("run by test_readme_inspect_example with the inspect command after it"),
    "sudo nsgraph inspect --compare --host --container nsgdoc-web --type uts,net,pid --lines 6":
        NotRun("run by test_readme_inspect_example, against the container the command before it starts"),
    "nsgraph inspect": NotRun(MENTION + " (its forms, from `nsgraph inspect --help`, are run)"),
    "NSGRAPH_INSIDE_TIMEOUT=SECONDS": NotRun("an environment variable's form, not a command line"),
    # nsgraph inspect --help
    "nsgraph inspect --host --type uts,net": Run(check_inspect_host),
    "nsgraph inspect net:4026532334": Run(check_inspect_example("net:4026532334")),
    "nsgraph inspect net:4:4026532334:0 --json": Run(check_inspect_example("net:4:4026532334:0")),
    "nsgraph inspect --container myapp": Run(check_inspect_example("'myapp'")),
    "nsgraph inspect --compare --host --container myapp --type uts,net,pid": Run(check_inspect_example("'myapp'")),
    "nsgraph inspect --compare uts:4026531838 uts:4026532310": Run(check_inspect_example("uts:4026532310")),
    # nsgraph doctor --help
    "sudo nsgraph doctor --quick": Run(ok),
    "nsgraph doctor --json": Run(check_doctor_json),
    # nsgraph demo-image --help
    "nsgraph demo-image --rebuild": Run(ok),
    "IMG=$(nsgraph demo-image --quiet)": Run(ok),
}


def check_trace_filtered(ran: Ran) -> None:
    check_trace_columns(ran, None)


COMMANDS["nsgraph trace --type net,pid"] = Run(check_trace_filtered, until=TRACING, then=trigger_events)
COMMANDS["nsgraph trace --procs"] = Run(check_trace_filtered, until=TRACING, then=trigger_events)


# -- the tests ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def as_root():
    require(os.geteuid() == 0, "the README's commands run as root (sudo)")
    for tool in ("dot", "jq", "curl", "unshare", "nsenter", "ip"):
        require(shutil.which(tool) is not None, "%s is missing (scripts/setup.sh installs it)" % tool)
    require(os.access(os.path.join(VENV_BIN, "nsgraph"), os.X_OK), "no .venv: run scripts/setup.sh first")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """One directory for the module: replay reads the trace.jsonl that record wrote."""
    return tmp_path_factory.mktemp("readme")


def test_every_command_is_classified(as_root):
    found = all_commands()
    unclassified = sorted(found - set(COMMANDS))
    stale = sorted(set(COMMANDS) - found)
    assert not unclassified, "commands shown in README.md or --help that this test neither runs nor " \
                             "explains: %s (add them to COMMANDS)" % unclassified
    assert not stale, "COMMANDS lists what README.md and --help no longer show: %s" % stale
    for command, spec in COMMANDS.items():
        assert isinstance(spec, (Run, NotRun)) and (isinstance(spec, Run) or spec.reason), command


@pytest.mark.parametrize("command", [c for c, spec in COMMANDS.items() if isinstance(spec, Run)])
def test_command_runs_as_written(command, as_root, workdir):
    spec = COMMANDS[command]
    cwd = REPO if spec.cwd == "repo" else str(workdir)
    ran = shell(command, cwd, netns=spec.netns, until=spec.until, after=spec.after, then=spec.then)
    spec.check(ran)


def test_metrics_example(as_root, workdir):
    """The README's /metrics scrape, next to a dashboard started as the --help example does."""
    curl = [c for c in all_commands() if c.startswith("curl ")]
    assert len(curl) == 1, curl
    results = {}

    def scrape(_out, pid):
        results["curl"] = subprocess.run(
            ["nsenter", "--net=/proc/%d/ns/net" % pid, "bash", "-c", PRELUDE + curl[0]],
            capture_output=True, text=True, timeout=30, env=clean_env())
        results["anonymous"] = http_get(pid, "http://127.0.0.1:5000/metrics")

    ran = shell("sudo nsgraph serve --token-file /var/lib/nsgraph/token", str(workdir), netns=True,
                until=SERVING, then=scrape)
    ok(ran)
    scraped = results["curl"]
    assert scraped.returncode == 0, scraped.stderr
    assert re.search(r"^nsgraph_\w+ ", scraped.stdout, re.M), scraped.stdout[:2000]
    assert results["anonymous"][0] == 401


def test_readme_inspect_example(as_root, workdir):
    """The README's inside example as written: `docker run -d --name nsgdoc-web ...`, then
    `inspect --compare --host --container nsgdoc-web`.  The rows the README shows are there,
    and the values come from the system: pid 1's hostname (nsenter), the container's
    hostname, pid and process count (docker inspect / docker top)."""
    require(shutil.which("docker") is not None, "docker is missing (scripts/setup.sh installs docker.io)")
    with open(README) as f:
        pair = [(cmd, lines) for kind, cmd, lines in readme_blocks(f.read())
                if kind == "console" and "nsgdoc-web" in cmd]
    assert [cmd.split()[0] for cmd, _ in pair] == ["docker", "sudo"], pair
    (start, _), (inspect, sample) = pair
    name = "nsgdoc-web"

    def docker(*argv) -> subprocess.CompletedProcess:
        return subprocess.run(["docker"] + list(argv), capture_output=True, text=True, timeout=120)
    taken = docker("ps", "-aq", "--filter", "name=^/%s$" % name).stdout.strip()
    require(not taken, "a container named %s exists that this test did not start (docker rm -f %s)" % (name, name))
    image = start.split()[-3]
    if docker("image", "inspect", image).returncode != 0:      # a fresh machine: the demos' image
        ok(shell("nsgraph demo-image --rebuild", str(workdir)))
    started = shell(start, str(workdir))
    container_id = started.out.strip().splitlines()[-1] if started.out.strip() else ""
    try:
        ok(started)
        facts = json.loads(docker("inspect", container_id).stdout)[0]
        ran = shell(inspect, REPO)
        top = docker("top", container_id).stdout.strip().splitlines()[1:]
    finally:
        if container_id:
            docker("rm", "-f", container_id)
    ok(ran)

    def labels(lines) -> list:
        return [line[2:].strip().split("  ")[0] for line in lines
                if line[:2] in ("* ", "  ") and line[2:].strip()[:1] not in ("=", "")]
    shown = ["hostname", "domainname", "interfaces", "lo", "eth0", "default route", "listening sockets",
             "processes", "init (pid 1)", "ps"]
    real = labels(ran.out.splitlines())
    assert re.findall(r"^  == (\w+) ==", ran.out, re.M) == ["uts", "net", "pid"], ran.out
    assert set(shown) <= set(labels(sample)), "the README's sample lacks rows: %s" % labels(sample)
    assert set(shown) <= set(real), "rows the README shows that the real output lacks: %s" % (
        sorted(set(shown) - set(real)))
    rows = {line[2:].strip().split("  ")[0]: line for line in ran.out.splitlines() if line[:2] in ("* ", "  ")}
    hostname = re.split(r"\s{2,}", rows["hostname"][2:].strip())
    assert hostname[1:] == [host_hostname(), facts["Config"]["Hostname"]], rows["hostname"]
    assert rows["hostname"].startswith("* ") == (hostname[1] != hostname[2])
    processes = re.split(r"\s{2,}", rows["processes"][2:].strip())
    assert processes[-1] == str(len(top)) == "1", (rows["processes"], top)
    assert rows["init (pid 1)"].rstrip().endswith("sleep 3600 (host pid %d)" % facts["State"]["Pid"]), \
        rows["init (pid 1)"]


def test_setup_links_nsgraph_onto_the_path(as_root):
    """setup.sh links /usr/local/bin/nsgraph to its venv, idempotently, and leaves a
    file that is not a link alone (in a mount namespace of its own, with an empty
    /usr/local/bin, so the machine's own link is not touched)."""
    script = (
        "set -e; mount -t tmpfs nsgtest-bin /usr/local/bin\n"
        "bash %s install >/dev/null 2>first.log || { cat first.log; exit 1; }\n"
        "readlink /usr/local/bin/nsgraph; PATH=/usr/local/bin:$PATH nsgraph --version\n"
        "bash %s install 2>&1 >/dev/null | grep -c 'linked ' || true\n"
        "rm /usr/local/bin/nsgraph; echo 'mine' > /usr/local/bin/nsgraph\n"
        "bash %s install 2>&1 >/dev/null | grep 'not a link' || true\n"
        "cat /usr/local/bin/nsgraph\n") % (SETUP, SETUP, SETUP)
    tmp = subprocess.run(["mktemp", "-d"], capture_output=True, text=True, check=True).stdout.strip()
    try:
        proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c", script],
                              cwd=tmp, env=dict(clean_env(), PWD=tmp), capture_output=True, text=True,
                              timeout=300)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert lines[0] == os.path.join(VENV_BIN, "nsgraph"), lines
    assert lines[1].startswith("nsgraph "), lines
    assert lines[2] == "0", "a second set-up linked again: %s" % lines
    assert "not a link" in lines[3] and lines[4] == "mine", lines


def test_setup_run_starts_the_dashboard_without_docker(as_root, workdir):
    """No usable engine: setup.sh run says why and serves anyway; the Docker demos are
    unavailable, with the reason."""
    seen = {}

    def look(out, pid):
        token = re.search(r"token=(\S+)", out).group(1)
        status, body = http_get(pid, "http://127.0.0.1:5000/api/demos", {"Authorization": "Bearer " + token})
        assert status == 200, body
        seen["demos"] = json.loads(body)["scenarios"]

    ran = shell("DOCKER_HOST=unix:///nonexistent/docker.sock %s run" % SETUP, REPO, netns=True,
                until=SERVING, then=look)
    ok(ran)
    assert "no Docker engine answers on unix:///nonexistent/docker.sock" in ran.out, ran.out[-3000:]
    assert "starting the dashboard without it" in ran.out
    docker = [d for d in seen["demos"] if d["kind"] == "docker"]
    assert docker and all(d["available"] is False and "Docker" in d["why"] for d in docker), docker
    assert all(d["available"] for d in seen["demos"] if d["kind"] == "util-linux"), seen["demos"]
