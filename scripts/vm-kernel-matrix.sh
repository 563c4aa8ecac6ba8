#!/usr/bin/env bash
# Kernel matrix: runs nsgraph's real-kernel tests (pytest marker `kernel`) inside a
# Debian 12 VM booted with Debian's own 6.1 kernel, under qemu's software emulation
# (TCG), so the tracer is proven on a second kernel besides the host's.
#
#   scripts/vm-kernel-matrix.sh [--results-dir DIR] [--project DIR] [--rebuild] [-- PYTEST_ARGS...]
#
# The VM image (Debian 12 + linux-image-amd64, linux-headers-amd64, BCC, pytest) is
# built once with debootstrap and cached under $NSGRAPH_VM_CACHE, keyed by a hash of
# scripts/vm/build-rootfs.sh, build-image.sh and packages.txt (scripts/vm/cache.sh).
# Each run boots a throwaway
# copy-on-write snapshot of it with a fresh copy of the project, runs the tests as root
# with CI=true and reads the junit report back.  Exit status: 0 when the tests ran and
# passed, 1 when they failed, ran no test, timed out or the VM broke, 2 on bad usage.
#
# Options:
#   --results-dir DIR  keep junit.xml, pytest.txt, console.log, summary.json in DIR
#                      (default: a new /tmp/nsgraph-vm-results.* folder)
#   --project DIR      the tree copied into the VM (default: this checkout)
#   --rebuild          rebuild the cached image even if it is up to date
#   --build-only       build (or find) the cached image and exit 0 without booting it
#   --guest-mode MODE  kernel-tests (default): pytest's kernel lane; fleet: the fleet tests' guest
#                      side (tests/fleet/vm_guest.py: an nsgraph agent driven by the host test)
#   --net SPEC         a qemu -nic SPEC (default none), e.g. user,restrict=on,guestfwd=... so the
#                      guest reaches only the host's loopback services the test forwards
#   --guest-files DIR  copied into the guest's /opt/nsgraph/.nsgraph-vm/ (credentials, config)
# Environment: NSGRAPH_VM_CACHE (/var/cache/nsgraph/vm), NSGRAPH_VM_TIMEOUT (900 s, for
# the whole boot-test-power-off leg; qemu is killed after it), NSGRAPH_VM_MEMORY (1536 MB),
# NSGRAPH_VM_CPUS (2), NSGRAPH_VM_ACCEL (tcg; stock kernels do not boot under this
# machine's KVM), NSGRAPH_VM_MIRROR (Debian mirror for the image build).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VMDIR="$REPO/scripts/vm"
CACHE="${NSGRAPH_VM_CACHE:-/var/cache/nsgraph/vm}"
TIMEOUT="${NSGRAPH_VM_TIMEOUT:-900}"
MEMORY="${NSGRAPH_VM_MEMORY:-1536}"
CPUS="${NSGRAPH_VM_CPUS:-2}"
ACCEL="${NSGRAPH_VM_ACCEL:-tcg}"
PROJECT="$REPO"
RESULTS_DIR=""
REBUILD=0
BUILD_ONLY=0
PYTEST_EXTRA=()
GUEST_MODE=kernel-tests
NET=none
GUEST_FILES=""

log() { printf '[vm-matrix %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { printf '[vm-matrix] error: %s\n' "$*" >&2; exit "${2:-1}"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --results-dir) RESULTS_DIR="${2:?--results-dir needs a folder}"; shift 2 ;;
    --project) PROJECT="$(cd "${2:?--project needs a folder}" && pwd)"; shift 2 ;;
    --rebuild) REBUILD=1; shift ;;
    --build-only) BUILD_ONLY=1; shift ;;
    --guest-mode) GUEST_MODE="${2:?--guest-mode needs kernel-tests or fleet}"; shift 2 ;;
    --net) NET="${2:?--net needs a qemu -nic specification}"; shift 2 ;;
    --guest-files) GUEST_FILES="$(cd "${2:?--guest-files needs a folder}" && pwd)"; shift 2 ;;
    -h|--help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; PYTEST_EXTRA=("$@"); break ;;
    *) die "unknown argument '$1' (see --help)" 2 ;;
  esac
done
case "$TIMEOUT" in ''|*[!0-9]*) die "NSGRAPH_VM_TIMEOUT must be a number of seconds, not '$TIMEOUT'" 2 ;; esac
case "$GUEST_MODE" in kernel-tests|fleet) ;; *) die "--guest-mode must be kernel-tests or fleet, not '$GUEST_MODE'" 2 ;; esac

[ "$(id -u)" -eq 0 ] || die "run me as root: building the image needs debootstrap and chroot"
for tool in qemu-system-x86_64 tar flock timeout sha256sum; do
  command -v "$tool" >/dev/null || die "$tool is missing: apt-get install qemu-system-x86 qemu-utils debootstrap e2fsprogs (scripts/setup.sh test installs them)"
done
[ -d "$PROJECT/tests" ] || die "$PROJECT has no tests/ folder; --project must point at an nsgraph checkout"

T0=$SECONDS
# shellcheck source=scripts/vm/cache.sh
. "$VMDIR/cache.sh"
# The root file system is shared with the Vagrant test box (scripts/vagrant-box.sh);
# the image adds the matrix's own init to it.  The cache's lock is held from here on.
vm_shared_rootfs
KEY="$(echo "$ROOTFS_KEY" | vm_key - "$VMDIR/build-image.sh")"
IMAGE="$CACHE/img-$KEY"
build_image() { bash "$VMDIR/build-image.sh" "$1" "$ROOTFS_TAR"; }
[ -f "$IMAGE/root.img" ] && [ "$REBUILD" -eq 0 ] && log "reusing the cached image $IMAGE"
VM_REBUILD="$REBUILD" vm_cached img "$KEY" root.img build_image
KREL_IMAGE="$(cat "$IMAGE/kernel-release")"
if [ "$BUILD_ONLY" -eq 1 ]; then
  log "the image for Debian's $KREL_IMAGE is ready: $IMAGE ($((SECONDS - T0)) s)"
  exit 0
fi

RUN="$(mktemp -d "${TMPDIR:-/var/tmp}/nsgraph-vm-run.XXXXXX")"
if [ -z "$RESULTS_DIR" ]; then
  RESULTS_DIR="$(mktemp -d /tmp/nsgraph-vm-results.XXXXXX)"
fi
mkdir -p "$RESULTS_DIR"
rm -f "$RESULTS_DIR"/{junit.xml,pytest.txt,console.log,summary.json,kernel-release,rc,pytest-seconds}
QEMU_PID=""
cleanup() {
  if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; then kill "$QEMU_PID" 2>/dev/null || true; fi
  rm -rf "$RUN"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The project goes in as a bare tar archive on its own disk: no file system to make,
# and the guest unpacks it with plain tar.
mkdir -p "$RUN/extra/.nsgraph-vm"
{
  printf 'PYTEST_TIMEOUT=%q\n' "$((TIMEOUT > 120 ? TIMEOUT - 60 : TIMEOUT))"
  printf 'PYTEST_EXTRA=%q\n' "${PYTEST_EXTRA[*]:-}"
  printf 'GUEST_MODE=%q\n' "$GUEST_MODE"
} > "$RUN/extra/.nsgraph-vm/run.env"
[ -z "$GUEST_FILES" ] || cp -a "$GUEST_FILES/." "$RUN/extra/.nsgraph-vm/"
tar -cf "$RUN/project.tar" --exclude=.git --exclude=.venv --exclude=__pycache__ \
  --exclude='*.egg-info' --exclude=.pytest_cache --exclude=.hypothesis --exclude=node_modules \
  --exclude=.nsgraph-vm -C "$PROJECT" .
# Appended separately: the --exclude above would drop it too.
tar -rf "$RUN/project.tar" -C "$RUN/extra" .nsgraph-vm
truncate -s 64M "$RUN/results.img"

log "booting Debian's $KREL_IMAGE under qemu $ACCEL ($CPUS vCPUs, $MEMORY MB; time limit ${TIMEOUT} s); VM output follows"
TVM=$SECONDS
# The root disk is opened with snapshot=on: writes go to a temporary overlay in $RUN
# and the cached image is never modified.  Disks get PCI slots, hence vdX names, in
# the order of the -device options: root first, so root=/dev/vda holds.
TMPDIR="$RUN" timeout -k 10 "$TIMEOUT" qemu-system-x86_64 \
  -accel "$ACCEL" -m "$MEMORY" -smp "$CPUS" -cpu max \
  -display none -serial stdio -monitor none -no-reboot -nic "$NET" \
  -kernel "$IMAGE/vmlinuz" -initrd "$IMAGE/initrd.img" \
  -drive "file=$IMAGE/root.img,format=raw,if=none,id=root,snapshot=on" \
  -device virtio-blk-pci,drive=root,serial=nsgroot \
  -drive "file=$RUN/project.tar,format=raw,if=none,id=project,readonly=on" \
  -device virtio-blk-pci,drive=project,serial=nsgproject \
  -drive "file=$RUN/results.img,format=raw,if=none,id=results" \
  -device virtio-blk-pci,drive=results,serial=nsgresults \
  -append "root=/dev/vda rw console=ttyS0 init=/sbin/nsgraph-vm-init panic=-1 quiet loglevel=4" \
  < /dev/null > "$RESULTS_DIR/console.log" 2>&1 &
QEMU_PID=$!
tail -n +1 -s 0.5 -f --pid="$QEMU_PID" "$RESULTS_DIR/console.log" | sed -u 's/\r$//; s/^/  vm| /' >&2 &
TAIL_PID=$!
set +e
wait "$QEMU_PID"
QEMU_RC=$?
set -e
QEMU_PID=""
wait "$TAIL_PID" 2>/dev/null || true
VM_SECONDS=$((SECONDS - TVM))

STATUS=ok
REASON=""
if [ "$QEMU_RC" -eq 124 ] || [ "$QEMU_RC" -eq 137 ]; then
  STATUS=timeout; REASON="the VM leg exceeded ${TIMEOUT} s and qemu was killed (raise NSGRAPH_VM_TIMEOUT, or see console.log)"
elif [ "$QEMU_RC" -ne 0 ]; then
  STATUS=error; REASON="qemu exited with status $QEMU_RC (see $RESULTS_DIR/console.log)"
fi
if ! tar -xf "$RUN/results.img" -C "$RESULTS_DIR" 2>/dev/null || [ ! -f "$RESULTS_DIR/rc" ]; then
  [ "$STATUS" = ok ] && { STATUS=error; REASON="the VM wrote no results (see $RESULTS_DIR/console.log)"; }
fi

# Count from the junit report, not from pytest's exit status alone: a run that
# selected nothing must fail too.
/usr/bin/env python3 - "$RESULTS_DIR" "$STATUS" "$REASON" "$VM_SECONDS" "$KREL_IMAGE" "$(uname -r)" "$GUEST_MODE" <<'EOF'
import json, os, sys
import xml.etree.ElementTree as ET

out, status, reason, vm_seconds, krel_image, host_krel, mode = sys.argv[1:8]
def read(name):
    try:
        with open(os.path.join(out, name)) as f:
            return f.read().strip()
    except OSError:
        return None
counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
junit_error = None
try:
    root = ET.parse(os.path.join(out, "junit.xml")).getroot()
    for suite in ([root] if root.tag == "testsuite" else root.iter("testsuite")):
        for k in counts:
            counts[k] += int(suite.get(k, 0))
except (OSError, ET.ParseError) as exc:
    junit_error = exc
passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
rc = read("rc")
if status == "ok" and mode == "fleet":
    # The fleet guest has no junit report: the host's fleet tests count the checks.
    if rc != "0":
        status, reason = "failed", "the fleet guest exited with status %s (see pytest.txt)" % rc
elif status == "ok":
    # pytest's exit status 5 means it collected nothing.
    if rc == "5" or (rc == "0" and junit_error is None and passed <= 0):
        status, reason = "failed", "the VM ran no test (none selected, or all skipped)"
    elif rc != "0":
        status, reason = "failed", "pytest in the VM exited with status %s (see pytest.txt)" % rc
    elif junit_error is not None:
        status, reason = "error", "no readable junit report from the VM (%s)" % junit_error
summary = dict(status=status, reason=reason, kernel_release=read("kernel-release"),
               image_kernel_release=krel_image, host_kernel_release=host_krel,
               passed=passed, pytest_exit=rc, vm_seconds=int(vm_seconds),
               pytest_seconds=float(read("pytest-seconds") or 0), **counts)
with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump(summary, f, indent=1)
EOF

STATUS="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["status"])' "$RESULTS_DIR/summary.json")"
echo
echo "== kernel matrix: Debian 12 VM =="
if [ -f "$RESULTS_DIR/pytest.txt" ]; then
  # pytest's own closing summary: the short test summary info and the final count line.
  awk '/short test summary info/{p=1} p' "$RESULTS_DIR/pytest.txt" | tail -n 40
  grep -q 'short test summary info' "$RESULTS_DIR/pytest.txt" || tail -n 3 "$RESULTS_DIR/pytest.txt"
fi
python3 - "$RESULTS_DIR/summary.json" "$((SECONDS - T0))" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
print("kernel inside the VM: %s (host: %s)" % (s["kernel_release"], s["host_kernel_release"]))
print("tests: %(tests)d, passed %(passed)d, failed %(failures)d, errors %(errors)d, skipped %(skipped)d" % s)
print("VM leg: %d s wall (pytest %.0f s inside); whole script %s s" % (s["vm_seconds"], s["pytest_seconds"], sys.argv[2]))
print("result: %s%s" % (s["status"], (" - " + s["reason"]) if s["reason"] else ""))
EOF
echo "artifacts: $RESULTS_DIR"
[ "$STATUS" = ok ]
