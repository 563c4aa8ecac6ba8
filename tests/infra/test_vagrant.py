"""The Vagrantfile and the shell scripts, checked by vagrant, ruby and shellcheck.

`vagrant validate` does not notice a misspelled box or a port forward open to
the whole network, so the content test asks Vagrant itself for the loaded
configuration (a small Ruby program that builds a Vagrant::Environment) rather
than matching the Ruby text with regular expressions.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys

import pytest

from conftest import REPO, require

VAGRANTFILE = os.path.join(REPO, "Vagrantfile")

# Evaluates a Vagrantfile with Vagrant's own loader and prints what it configured.
DUMP_RB = r'''
require "json"
require "tmpdir"
require "vagrant"
env = Vagrant::Environment.new(cwd: ARGV[0], ui_class: Vagrant::UI::Silent,
                               local_data_path: Dir.mktmpdir("nsgtest-vagrant-"))
vm = env.vagrantfile.config.vm
providers = {}
vm.instance_variable_get(:@__providers).each_key do |name|
  pc = vm.get_provider_config(name)
  fields = {"class" => pc.class.name}
  %w[memory cpus customizations driver cpu_mode cpu_model].each do |f|
    fields[f] = pc.public_send(f) if pc.respond_to?(f)
  end
  providers[name.to_s] = fields
end
out = {
  "box" => vm.box,
  "networks" => vm.networks.map { |type, opts| {"type" => type.to_s}.merge(opts.transform_keys(&:to_s)) },
  "synced_folders" => vm.synced_folders,
  "provisioners" => vm.provisioners.map { |p|
    {"type" => p.type.to_s, "path" => p.config.path, "inline" => p.config.inline, "env" => p.config.env}
  },
  "providers" => providers,
}
puts JSON.generate(out)
'''


def _need(tool: str) -> str:
    path = shutil.which(tool)
    require(path is not None, "%s is not installed (apt-get install -y %s)" % (tool, tool))
    return path


# The Vagrantfile's own environment knobs: each test states the ones it means.
VAGRANT_KNOBS = ("NSGRAPH_VAGRANT_BOX", "NSGRAPH_LIBVIRT_DRIVER", "NSGRAPH_HOST_PORT", "NSGRAPH_MEMORY", "NSGRAPH_CPUS")


def _load_config(workdir, **knobs):
    """Vagrant's reading of the Vagrantfile with the NSGRAPH_* knobs given (others unset)."""
    _need("vagrant")
    ruby = _need("ruby")
    script = workdir / "dump.rb"
    script.write_text(DUMP_RB)
    env = {k: v for k, v in os.environ.items() if k not in VAGRANT_KNOBS}
    env.update(knobs, VAGRANT_CHECKPOINT_DISABLE="1")
    return subprocess.run([ruby, str(script), REPO], capture_output=True, text=True, timeout=120, env=env)


def _config(workdir, **knobs):
    proc = _load_config(workdir, **knobs)
    assert proc.returncode == 0, "evaluating the Vagrantfile failed:\n%s" % proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def vagrant_config(tmp_path_factory):
    return _config(tmp_path_factory.mktemp("vagrant"))


def test_vagrant_validate():
    vagrant = _need("vagrant")
    env = dict(os.environ, VAGRANT_CHECKPOINT_DISABLE="1")
    proc = subprocess.run([vagrant, "validate"], cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "validated successfully" in proc.stdout


def test_box_has_btf_kernel_with_packaged_headers(vagrant_config):
    assert vagrant_config["box"] == "bento/ubuntu-24.04"


def test_box_comes_from_the_environment_when_given(tmp_path):
    assert _config(tmp_path, NSGRAPH_VAGRANT_BOX="nsgraph-test-0123")["box"] == "nsgraph-test-0123"
    # Empty is the same as unset: users get the default box.
    assert _config(tmp_path, NSGRAPH_VAGRANT_BOX="")["box"] == "bento/ubuntu-24.04"


def _kvm_boots_stock_kernels():
    # Ground truth from the system: a stock kernel needs the CPU's virtualization module.
    return os.path.exists("/dev/kvm") and any(os.path.isdir("/sys/module/" + m) for m in ("kvm_intel", "kvm_amd"))


def test_libvirt_driver_follows_what_kvm_can_boot(vagrant_config):
    libvirt = vagrant_config["providers"]["libvirt"]
    if _kvm_boots_stock_kernels():
        assert libvirt["driver"] == "kvm"
    else:
        # qemu's emulation, with a CPU model it can emulate (host-model needs KVM).
        assert (libvirt["driver"], libvirt["cpu_mode"], libvirt["cpu_model"]) == ("qemu", "custom", "qemu64")


@pytest.mark.parametrize("driver", ["kvm", "qemu"])
def test_libvirt_driver_can_be_forced(tmp_path, driver):
    libvirt = _config(tmp_path, NSGRAPH_LIBVIRT_DRIVER=driver)["providers"]["libvirt"]
    assert libvirt["driver"] == driver
    assert libvirt["cpu_mode"] == ("custom" if driver == "qemu" else "host-model")


def test_unknown_libvirt_driver_is_refused_in_one_line(tmp_path):
    proc = _load_config(tmp_path, NSGRAPH_LIBVIRT_DRIVER="xen")
    assert proc.returncode != 0
    assert "NSGRAPH_LIBVIRT_DRIVER must be kvm or qemu, not 'xen'" in proc.stderr


def test_dashboard_port_forwarded_to_host_loopback_only(vagrant_config):
    forwards = [n for n in vagrant_config["networks"]
                if n["type"] == "forwarded_port" and n.get("id") != "ssh"]
    assert len(forwards) == 1, forwards
    fwd = forwards[0]
    assert (fwd["guest"], fwd["host"]) == (5000, 5000)
    assert fwd["host_ip"] == "127.0.0.1"
    # A silently moved port would make the printed URL wrong.
    assert not fwd.get("auto_correct")
    # No other network is exposed (a public_network would bypass host_ip).
    assert {n["type"] for n in vagrant_config["networks"]} == {"forwarded_port"}


def test_provisioning_runs_the_script_file(vagrant_config):
    provs = vagrant_config["provisioners"]
    assert [p["type"] for p in provs] == ["shell"]
    prov = provs[0]
    assert prov["inline"] is None
    path = os.path.join(REPO, prov["path"])
    assert os.path.realpath(path) == os.path.join(REPO, "scripts", "provision.sh")
    mode = os.stat(path).st_mode
    assert stat.S_ISREG(mode) and mode & stat.S_IXUSR, "%s must be an executable file" % path
    # The printed URL must carry the host-side port of the forward.
    assert prov["env"]["NSGRAPH_URL_PORT"] == "5000"
    # Vagrant runs an uploaded copy in /tmp: the script must be told where the project is.
    synced = [k for k, v in vagrant_config["synced_folders"].items() if not v.get("disabled")]
    assert [prov["env"]["NSGRAPH_REPO"]] == synced


def test_project_synced_into_the_vm(vagrant_config):
    folders = {k: v for k, v in vagrant_config["synced_folders"].items() if not v.get("disabled")}
    assert list(folders) == ["/opt/nsgraph"]
    sync = folders["/opt/nsgraph"]
    assert sync["hostpath"] == "."
    # The host's own virtualenv must not land in the VM (it points at host paths).
    assert ".venv/" in sync.get("rsync__exclude", []) or sync.get("type") != "rsync"


def test_both_providers_get_memory_and_cpus(vagrant_config):
    providers = vagrant_config["providers"]
    assert set(providers) == {"virtualbox", "libvirt"}
    libvirt = providers["libvirt"]
    assert libvirt["class"].endswith("ProviderLibvirt::Config"), "vagrant-libvirt is not installed: %s" % libvirt
    assert libvirt["memory"] >= 2048 and libvirt["cpus"] >= 2
    # VirtualBox turns vb.memory/vb.cpus into modifyvm customizations.
    vbox = {}
    for cust in providers["virtualbox"]["customizations"]:
        _event, command = cust
        if command[0] == "modifyvm":
            vbox.update(zip(command[2::2], command[3::2]))
    assert int(vbox["--memory"]) >= 2048 and int(vbox["--cpus"]) >= 2


SHELLS = {"sh", "bash", "dash"}
# Run by name with bash, so shell scripts even without a shebang.
BASH_BY_NAME = {".ci/run"}


def _interpreter(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            first = fh.readline(200).decode("utf-8", "replace")
    except OSError:
        return None
    if not first.startswith("#!"):
        return None
    words = first[2:].split()
    if not words:
        return None
    name = os.path.basename(words[0])
    if name == "env" and len(words) > 1:
        name = words[-1] if words[1].startswith("-") else words[1]
    return name


def _shell_scripts() -> list[str]:
    """Every shell script in the project tree, by name, by shebang or by how CI runs it."""
    found = []
    skip = {".git", ".venv", "node_modules", "__pycache__", ".pytest_cache"}
    for top, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in skip and not d.endswith(".egg-info")]
        for name in files:
            path = os.path.join(top, name)
            rel = os.path.relpath(path, REPO)
            if name.endswith((".sh", ".bash")) or rel in BASH_BY_NAME or _interpreter(path) in SHELLS:
                found.append(rel)
    return sorted(found)


def test_shell_scripts_are_found():
    scripts = set(_shell_scripts())
    assert {"scripts/setup.sh", "scripts/provision.sh"} <= scripts


@pytest.mark.parametrize("script", _shell_scripts())
def test_shellcheck(script):
    shellcheck = _need("shellcheck")
    # Warnings and errors; style and info notes (e.g. SC1091 on /etc/os-release) are advice.
    cmd = [shellcheck, "--severity=warning", "--external-sources"]
    if _interpreter(os.path.join(REPO, script)) is None:
        cmd.append("--shell=bash")
    proc = subprocess.run(cmd + [script],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _nsgraph_executable() -> str:
    path = os.path.join(os.path.dirname(sys.executable), "nsgraph")
    require(os.access(path, os.X_OK), "%s is missing (pip install -e . into this venv)" % path)
    return path


@pytest.fixture(scope="module")
def rendered_unit(tmp_path_factory):
    """The systemd unit provision.sh installs, rendered for this checkout's venv."""
    nsgraph = _nsgraph_executable()
    env = dict(os.environ, NSGRAPH_VENV=os.path.dirname(os.path.dirname(nsgraph)))
    proc = subprocess.run(["bash", os.path.join(REPO, "scripts", "provision.sh"), "--print-unit"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    path = tmp_path_factory.mktemp("unit") / "nsgraph.service"
    path.write_text(proc.stdout)
    return path


def test_systemd_unit_verifies(rendered_unit):
    analyze = _need("systemd-analyze")
    proc = subprocess.run([analyze, "verify", "--man=no", str(rendered_unit)],
                          capture_output=True, text=True, timeout=120, cwd=str(rendered_unit.parent))
    # systemd ignores a bad setting with only a warning and exit status 0.
    problems = [l for l in proc.stderr.splitlines() if rendered_unit.name in l or "nsgraph" in l]
    assert proc.returncode == 0 and not problems, proc.stderr


def test_systemd_unit_runs_a_valid_serve_command(rendered_unit):
    text = rendered_unit.read_text()
    assert "\nWantedBy=multi-user.target\n" in text, "the dashboard must start at boot"
    assert not re.search(r"@[A-Z_]+@", text), "unfilled template field:\n" + text
    exec_start = [l.split("=", 1)[1] for l in text.splitlines() if l.startswith("ExecStart=")]
    assert len(exec_start) == 1
    argv = exec_start[0].split()
    assert argv[0] == _nsgraph_executable()
    # Ask the real command-line parser whether it accepts the unit's arguments.
    from tracer.cli import build_parser
    args = build_parser().parse_args(argv[1:])
    assert args.command == "serve"
    assert args.host == "0.0.0.0" and args.allow_remote and args.port == 5000
    assert args.token_file == "/var/lib/nsgraph/token"
