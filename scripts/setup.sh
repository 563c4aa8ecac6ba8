#!/usr/bin/env bash
# nsgraph set-up: installs and starts everything nsgraph needs, idempotently, on a
# Debian 12 or Ubuntu 24.04 machine, as root.  Every step checks before it acts,
# so running it again is quick and changes nothing that is already right.
#
#   scripts/setup.sh run      set up, then run the dashboard (nsgraph serve)
#   scripts/setup.sh test     set up, start dockerd, build the demo image, run the tests
#   scripts/setup.sh install  set up only (what the Vagrant provisioner uses)
#
# Environment: NSGRAPH_VENV (default: <repo>/.venv), NSGRAPH_SERVE_ARGS (extra
# arguments for 'nsgraph serve'), PYTEST_ARGS (extra arguments for pytest).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${NSGRAPH_VENV:-$REPO/.venv}"
MODE="${1:-install}"
shift || true

log() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

case "$MODE" in
  run|test|install) ;;
  -h|--help|help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown mode '$MODE' (use: run, test or install)" ;;
esac

[ "$(id -u)" -eq 0 ] || die "run me as root (sudo $0 $MODE): installing packages and loading eBPF probes need it"

# shellcheck disable=SC1091  # the running system's file, not part of this repo
. /etc/os-release 2>/dev/null || die "cannot read /etc/os-release; nsgraph's set-up supports Debian 12 and Ubuntu 24.04"
case "${ID:-}:${ID_LIKE:-}" in
  debian:*|ubuntu:*|*:*debian*) ;;
  *) die "unsupported distribution '${ID:-unknown}'; nsgraph's set-up supports Debian 12 and Ubuntu 24.04 (install python3-bpfcc and kernel headers by hand elsewhere)" ;;
esac

export DEBIAN_FRONTEND=noninteractive
APT_UPDATED=0
apt_install() {
  # Install only what is missing, so a set-up machine does not touch the network.
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  if [ "$APT_UPDATED" -eq 0 ]; then
    log "apt-get update"
    apt-get update -qq
    APT_UPDATED=1
  fi
  log "installing ${missing[*]} (this can take a few minutes)"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

apt_has() {
  if [ "$APT_UPDATED" -eq 0 ] && ! apt-cache show "$1" >/dev/null 2>&1; then
    apt-get update -qq; APT_UPDATED=1
  fi
  apt-cache show "$1" >/dev/null 2>&1
}

KREL="$(uname -r)"

install_headers() {
  # BCC compiles against a kernel header tree.  Offsets come from BTF at load time,
  # so a tree of another version only has to compile; it is never trusted for layouts.
  if [ -e "/lib/modules/$KREL/build/include" ]; then
    return 0
  fi
  if apt_has "linux-headers-$KREL"; then
    apt_install "linux-headers-$KREL"
    return 0
  fi
  local generic=linux-headers-amd64
  case "$(dpkg --print-architecture)" in
    arm64) generic=linux-headers-arm64 ;;
  esac
  [ "${ID:-}" = ubuntu ] && generic=linux-headers-generic
  log "no headers packaged for kernel $KREL; using $generic and linking it (layouts come from BTF)"
  apt_install "$generic"
  local build="" common dir
  # The newest installed tree of that flavour (e.g. linux-headers-6.1.0-57-amd64).
  for dir in /usr/src/linux-headers-*-"${generic#linux-headers-}" /usr/src/linux-headers-*; do
    [ -d "$dir/include" ] || continue
    case "$dir" in *-common) continue ;; esac
    build="$(printf '%s\n%s\n' "$build" "$dir" | sed '/^$/d' | sort -V | tail -n 1)"
  done
  [ -n "$build" ] || die "installed $generic but found no header tree in /usr/src"
  common="${build%-*}-common"
  mkdir -p "/lib/modules/$KREL"
  # Never overwrite links or trees that are already there.
  [ -e "/lib/modules/$KREL/build" ] || [ -L "/lib/modules/$KREL/build" ] || ln -s "$build" "/lib/modules/$KREL/build"
  if [ -d "$common" ]; then
    [ -e "/lib/modules/$KREL/source" ] || [ -L "/lib/modules/$KREL/source" ] || ln -s "$common" "/lib/modules/$KREL/source"
  fi
}

mount_tracefs() {
  mountpoint -q /sys/kernel/tracing 2>/dev/null && return 0
  log "mounting tracefs at /sys/kernel/tracing"
  mount -t tracefs nodev /sys/kernel/tracing || die "mounting tracefs failed; syscall tracepoints need it"
}

setup_venv() {
  [ -x /usr/bin/python3 ] || die "/usr/bin/python3 is missing"
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV from /usr/bin/python3 with --system-site-packages (so it sees the distro's bcc)"
    /usr/bin/python3 -m venv --system-site-packages "$VENV"
  fi
  "$VENV/bin/python" -c 'import bcc' 2>/dev/null || die "bcc is not importable from $VENV; python3-bpfcc must belong to /usr/bin/python3 ($(/usr/bin/python3 --version))"
  local stamp="$VENV/.nsgraph-installed" want have hash
  hash="$(sha256sum < "$REPO/pyproject.toml" | cut -d' ' -f1)"
  want="$hash-$1"
  have="$(cat "$stamp" 2>/dev/null || true)"
  # A test install (with the test extras) also serves run and install.
  [ "$have" = "$hash-test" ] && want="$have"
  if [ "$have" != "$want" ]; then
    local extra=""
    [ "$1" = test ] && extra="[test]"
    log "installing nsgraph into $VENV (pip install -e .$extra)"
    "$VENV/bin/pip" install -q --disable-pip-version-check -e "$REPO$extra"
    echo "$want" > "$stamp"
  fi
  # The dashboard's scripts and styles, compressed (br, gzip) at the highest levels
  # once here rather than on the first request; already-right copies are skipped.
  # (A read-only checkout just serves them compressed in memory instead.)
  "$VENV/bin/python" -m webapp.assets precompress >/dev/null 2>&1 || log "could not precompress webapp/static (read-only?); the server compresses on first request"
}

start_dockerd() {
  docker info >/dev/null 2>&1 && return 0
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    log "starting docker with systemctl"
    systemctl start docker || true
  fi
  if ! docker info >/dev/null 2>&1; then
    if ! pgrep -x dockerd >/dev/null; then
      log "starting dockerd (no systemd here); its log is /var/log/dockerd.log"
      nohup dockerd >/var/log/dockerd.log 2>&1 &
    fi
    local _
    for _ in $(seq 1 60); do
      docker info >/dev/null 2>&1 && break
      sleep 0.5
    done
  fi
  docker info >/dev/null 2>&1 || die "dockerd did not come up; see /var/log/dockerd.log"
}

BASE_PACKAGES=(python3-bpfcc python3-venv python3-pip util-linux iproute2 procps docker.io busybox-static ca-certificates)
TEST_PACKAGES=(chromium shellcheck debootstrap qemu-system-x86 qemu-utils e2fsprogs fonts-dejavu-core gcc libc6-dev systemd ruby)

log "nsgraph set-up ($MODE) in $REPO"
apt_install "${BASE_PACKAGES[@]}"
if [ "$MODE" = test ]; then
  apt_install "${TEST_PACKAGES[@]}"
  # vagrant is packaged by Debian but not by every Ubuntu release.
  if apt_has vagrant; then apt_install vagrant; else log "vagrant is not packaged here; the Vagrantfile tests will say so"; fi
  # bpftool cross-checks BTF offsets; Ubuntu ships it only inside linux-tools.
  if apt_has bpftool; then apt_install bpftool; fi
fi
install_headers
mount_tracefs
setup_venv "$MODE"
log "nsgraph is at $VENV/bin/nsgraph"

case "$MODE" in
  install)
    "$VENV/bin/nsgraph" doctor || true
    ;;
  run)
    start_dockerd
    # Deliberately no quotes: NSGRAPH_SERVE_ARGS holds several arguments.
    # shellcheck disable=SC2086
    exec "$VENV/bin/nsgraph" serve ${NSGRAPH_SERVE_ARGS:-} "$@"
    ;;
  test)
    start_dockerd
    "$VENV/bin/nsgraph" demo-image --quiet
    cd "$REPO"
    # shellcheck disable=SC2086
    exec "$VENV/bin/python" -m pytest ${PYTEST_ARGS:-} "$@"
    ;;
esac
