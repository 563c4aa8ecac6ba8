#!/bin/sh
# Runs inside the kernel-matrix VM as PID 1 (exec'd by the image's /sbin/nsgraph-vm-init
# from the project copy, so it is always this checkout's version).  Mounts what the
# tracer needs, runs the kernel tests, writes the results as a tar archive onto the
# disk with serial "nsgresults" and powers off.  Everything printed here reaches the
# host's console log; lines starting with NSGRAPH-VM are for the host script.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root CI=true LANG=C.UTF-8
export PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 TERM=dumb
PROJECT=/opt/nsgraph
RESULTS=/results

say() { echo "NSGRAPH-VM: $*"; }

power_off() {
  sync
  echo o > /proc/sysrq-trigger
  sleep 30
}

disk_with_serial() {
  for d in /sys/block/vd*; do
    [ "$(cat "$d/serial" 2>/dev/null)" = "$1" ] && { echo "/dev/${d##*/}"; return 0; }
  done
  return 1
}

mount_if_missing() {  # fstype source target [options]
  mkdir -p "$3"
  mountpoint -q "$3" && return 0
  mount -t "$1" ${4:+-o "$4"} "$2" "$3" || say "warning: could not mount $1 on $3"
}

mount_if_missing tmpfs tmpfs /run mode=755
mount_if_missing tmpfs tmpfs /tmp mode=1777
mount_if_missing devpts devpts /dev/pts
mount_if_missing tmpfs tmpfs /dev/shm mode=1777
mount_if_missing tracefs nodev /sys/kernel/tracing
mount_if_missing debugfs nodev /sys/kernel/debug
mount_if_missing cgroup2 cgroup2 /sys/fs/cgroup
mount_if_missing bpf bpf /sys/fs/bpf
ip link set lo up 2>/dev/null
hostname nsgraph-vm

mkdir -p "$RESULTS"
uname -r > "$RESULTS/kernel-release"
say "user space up after $(cut -d' ' -f1 /proc/uptime) s; kernel $(uname -r); BTF $( [ -e /sys/kernel/btf/vmlinux ] && echo present || echo absent ); headers $( [ -e "/lib/modules/$(uname -r)/build/include" ] && echo match || echo MISSING )"

# The host passes the pytest arguments and the in-VM time limit in this file.
PYTEST_TIMEOUT=840
PYTEST_EXTRA=""
# shellcheck source=/dev/null
[ -f "$PROJECT/.nsgraph-vm/run.env" ] && . "$PROJECT/.nsgraph-vm/run.env"

cd "$PROJECT" || { say "ERROR: no project copy"; power_off; }
start="$(cut -d' ' -f1 /proc/uptime)"
if [ "${GUEST_MODE:-kernel-tests}" = fleet ]; then
  # The fleet tests' guest side: an nsgraph agent driven by the host test (tests/fleet/vm.py).
  say "fleet mode: tests/fleet/vm_guest.py"
  { timeout -k 10 "$PYTEST_TIMEOUT" python3 tests/fleet/vm_guest.py; echo $? > "$RESULTS/rc"; } 2>&1 | tee "$RESULTS/pytest.txt"
else
  # The kernel lane (tests/kernel, marked `kernel` by tests/conftest.py), minus the
  # files marked host_only as a whole: they import what the VM deliberately lacks
  # (Flask) or measure the emulator; single host_only tests are deselected by -m.
  FILES="$(grep -L -E '^pytestmark *=.*host_only' tests/kernel/test_*.py 2>/dev/null | tr '\n' ' ')"
  say "test files: ${FILES:-none}"

  if [ -n "$FILES" ]; then
    # shellcheck disable=SC2086
    { timeout -k 10 "$PYTEST_TIMEOUT" python3 -m pytest -m "kernel and not host_only" -p no:cacheprovider \
        --junitxml="$RESULTS/junit.xml" -v -rfEs --durations=10 $PYTEST_EXTRA $FILES; echo $? > "$RESULTS/rc"; } 2>&1 \
      | tee "$RESULTS/pytest.txt"
  else
    echo 5 > "$RESULTS/rc"
    echo "no test file in tests/kernel/ to run" | tee "$RESULTS/pytest.txt"
  fi
fi
end="$(cut -d' ' -f1 /proc/uptime)"
echo "$start $end" | awk '{printf "%.1f\n", $2 - $1}' > "$RESULTS/pytest-seconds"
say "pytest exit $(cat "$RESULTS/rc") after $(cat "$RESULTS/pytest-seconds") s"

OUT_DISK="$(disk_with_serial nsgresults)"
if [ -n "$OUT_DISK" ]; then
  tar -cf "$OUT_DISK" -C "$RESULTS" . && sync && say "results written to $OUT_DISK"
else
  say "ERROR: no disk with serial nsgresults; results lost"
fi
say "DONE"
power_off
