"""Builds the VM cache in the background while the tests that need no VM run.

On a cold machine the VM tests' first step is minutes of debootstrap and image
building (the fleet tests' 6.1 VM, the kernel matrix, the Vagrant box); the tests
that come before them mostly wait on Docker, a browser or the kernel.  So when a
run selects tests that boot a VM, scripts/vm/prefetch.sh starts at the beginning,
niced and at idle I/O priority, and the VM tests later find the cache ready (or
wait for the build under the cache's lock, never building twice).  Its output goes
to a log named in the run's summary.  NSGRAPH_VM_PREFETCH=0 turns it off.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from typing import Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "scripts", "vm", "prefetch.sh")
# Test files whose VMs boot the kernel matrix's image, and the one that boots the box.
IMAGE_USERS = ("tests/fleet/test_fleet.py", "tests/infra/test_vm_kernel_matrix.py")
BOX_USERS = ("tests/infra/test_vagrant_up.py",)
IMAGE_TOOLS = ("qemu-system-x86_64", "debootstrap", "flock")
BOX_TOOLS = IMAGE_TOOLS + ("vagrant", "qemu-img")


def products_for(paths, have=shutil.which) -> list:
    """What to build for tests in these files (relative to the repository): image, box."""
    paths = set(paths)
    wanted = []
    if paths & set(IMAGE_USERS) and all(have(t) for t in IMAGE_TOOLS):
        wanted.append("image")
    if paths & set(BOX_USERS) and all(have(t) for t in BOX_TOOLS):
        wanted.append("box")
    return wanted


class Prefetch:
    def __init__(self, products: list, log_path: str):
        self.products, self.log_path = products, log_path
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(["nice", "-n", "19", "ionice", "-c3", "bash", SCRIPT, *products],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def finish(self) -> str:
        """Stops it if still running (a build killed half-way is cleaned by the next one)."""
        rc = self.proc.poll()
        if rc is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            return "VM prefetch (%s) was still running at the end and was stopped; log: %s" % (
                " ".join(self.products), self.log_path)
        return "VM prefetch (%s) exited %d; log: %s" % (" ".join(self.products), rc, self.log_path)


def start(items, artifacts: str) -> Optional[Prefetch]:
    if os.environ.get("NSGRAPH_VM_PREFETCH", "1") == "0" or os.geteuid() != 0:
        return None
    # The fleet tests all share one cluster, with its VM; elsewhere only tests marked vm boot one.
    paths = {os.path.relpath(str(item.path), REPO) for item in items
             if item.get_closest_marker("vm") or item.get_closest_marker("fleet")}
    products = products_for(paths)
    if not products:
        return None
    return Prefetch(products, os.path.join(artifacts, "vm-prefetch.log"))
