"""An installed nsgraph (a wheel, not this checkout) finds its BPF sources and web assets."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_wheel_ships_probes_and_web_assets(tmp_path):
    # Build from a copy of what the wheel is made of: setuptools writes build/ and
    # *.egg-info next to the sources, and the unit lane leaves the checkout as it found it
    # (it may be read-only: tests/infra/test_unit_lane.py runs it so).
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(REPO, name), source)
    for package in ("tracer", "webapp", "ebpf"):
        shutil.copytree(os.path.join(REPO, package), source / package,
                        ignore=shutil.ignore_patterns("__pycache__", "node_modules"))
    wheels = tmp_path / "wheels"
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(wheels), str(source)], check=True, timeout=300)
    wheel = next(wheels.glob("nsgraph-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, timeout=300)
    probe = (
        "import os, tracer.kernel.probes as p, webapp;"
        "d = p.ebpf_source_dir();"
        "print(d);"
        "print(os.path.isfile(os.path.join(d, 'nsgraph.bpf.c')), os.path.isfile(os.path.join(d, 'nsgraph.h')));"
        "w = os.path.dirname(webapp.__file__);"
        "print(os.path.isfile(os.path.join(w, 'templates', 'index.html')), os.path.isfile(os.path.join(w, 'static', 'js', 'main.js')))"
    )
    env = dict(os.environ, PYTHONPATH=str(target))
    out = subprocess.run([sys.executable, "-c", probe], cwd=str(tmp_path), env=env, capture_output=True,
                         text=True, check=True, timeout=60).stdout.split("\n")
    assert out[0].startswith(str(target)), out[0]   # the installed copy, not this checkout
    assert out[1] == "True True"
    assert out[2] == "True True"
