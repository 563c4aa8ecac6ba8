#!/usr/bin/env bash
# nsgraph set-up: installs and starts everything nsgraph needs, idempotently, on a
# Debian 12 or Ubuntu 24.04 machine, as root.  Every step checks before it acts,
# so running it again is quick and changes nothing that is already right.
#
#   scripts/setup.sh run [-- ARGS]    set up, then run the dashboard (nsgraph serve ARGS)
#   scripts/setup.sh test [-- ARGS]   set up, start dockerd, build the demo image, run
#                                     the tests (pytest ARGS, e.g. -- tests/unit -x)
#   scripts/setup.sh install          set up only (what the Vagrant provisioner uses)
#   scripts/setup.sh fleet-server|fleet-agent|fleet-dashboard ...   the fleet (README: Fleet;
#                                     the functions are in scripts/fleet-setup.sh)
#
# Set-up links /usr/local/bin/nsgraph to the virtualenv's nsgraph, so `nsgraph`
# works from any directory.  Arguments after the mode (with or without a leading
# --) go to nsgraph serve or pytest; they survive sudo, environment variables do
# not (use `sudo VAR=value scripts/setup.sh ...` for those).
# Environment: NSGRAPH_VENV (default: <repo>/.venv), NSGRAPH_SERVE_ARGS (extra
# arguments for 'nsgraph serve'), PYTEST_ARGS (extra arguments for pytest),
# NSGRAPH_PACKAGE_AUDIT (CI: a report file; the tests then run under
# .ci/package_audit.py, which fails when they use a package set-up does not name).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${NSGRAPH_VENV:-$REPO/.venv}"
MODE="${1:-install}"
shift || true

log() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

case "$MODE" in
  run|test|install|fleet-server|fleet-agent|fleet-dashboard) ;;
  # The comment block at the top, up to the first line that is not a comment.
  -h|--help|help) sed -n '2,/^[^#]/p' "$0" | sed -n 's/^# \{0,1\}//p'; exit 0 ;;
  *) die "unknown mode '$MODE' (use: run, test, install, fleet-server, fleet-agent or fleet-dashboard)" ;;
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
NAMED_PACKAGES=()   # every package set-up asks for by name (the package audit's input)
apt_install() {
  # Install only what is missing, so a set-up machine does not touch the network.
  local missing=() pkg
  NAMED_PACKAGES+=("$@")
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
    # Already there: name the package that owns the tree, for the package audit (a fresh
    # machine gets the same kind of tree from the packages below).
    local owner
    owner="$(dpkg-query -S "$(readlink -f "/lib/modules/$KREL/build")" 2>/dev/null | head -n 1 | cut -d: -f1)"
    [ -n "$owner" ] && NAMED_PACKAGES+=("$owner")
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
  want="$hash-${1%%-*}"     # the fleet-* modes share one install
  have="$(cat "$stamp" 2>/dev/null || true)"
  # A test install (with the test extras, the fleet's NATS client among them) also serves
  # run, install and the fleet modes.
  [ "$have" = "$hash-test" ] && want="$have"
  if [ "$have" != "$want" ]; then
    local extra=""
    case "$1" in test) extra="[test]" ;; fleet-*) extra="[fleet]" ;; esac
    log "installing nsgraph into $VENV (pip install -e .$extra)"
    "$VENV/bin/pip" install -q --disable-pip-version-check -e "$REPO$extra"
    echo "$want" > "$stamp"
  fi
  # The dashboard's scripts and styles, compressed (br, gzip) at the highest levels
  # once here rather than on the first request; already-right copies are skipped.
  # (A read-only checkout just serves them compressed in memory instead.)
  "$VENV/bin/python" -m webapp.assets precompress >/dev/null 2>&1 || log "could not precompress webapp/static (read-only?); the server compresses on first request"
}

DOCKERD_LOG=/var/log/nsgraph-dockerd.log
DOCKER_PROBLEM=""

docker_answers() {
  # Usable means the engine answers on its socket: a dockerd process somewhere (another
  # PID namespace, another user, a hung one) proves nothing.
  local out
  if out="$(docker info --format '{{.ServerVersion}}' 2>&1)"; then
    return 0
  fi
  case "$out" in
    *"permission denied"*)
      DOCKER_PROBLEM="the Docker socket refused access (${DOCKER_HOST:-unix:///var/run/docker.sock}: permission denied); run set-up as root, or point DOCKER_HOST at a socket you may use" ;;
    *"Cannot connect"*|*"Is the docker daemon running"*|*"No such file"*|*"connection refused"*)
      DOCKER_PROBLEM="no Docker engine answers on ${DOCKER_HOST:-unix:///var/run/docker.sock}" ;;
    *) DOCKER_PROBLEM="docker info failed: $(printf '%s' "$out" | tail -n 2 | tr '\n' ' ')" ;;
  esac
  return 1
}

start_dockerd() {
  # 0 when a Docker engine answers (starting dockerd if none does); else 1 with
  # DOCKER_PROBLEM saying why and what to do.
  command -v docker >/dev/null 2>&1 || { DOCKER_PROBLEM="the docker command is missing (apt-get install docker.io)"; return 1; }
  docker_answers && return 0
  case "$DOCKER_PROBLEM" in *"permission denied"*) return 1 ;; esac
  if [ -n "${DOCKER_HOST:-}" ]; then
    DOCKER_PROBLEM="$DOCKER_PROBLEM; DOCKER_HOST is set, so set-up does not start a local dockerd (unset it to use one)"
    return 1
  fi
  local _
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    log "starting docker with systemctl"
    if systemctl start docker; then
      for _ in $(seq 1 60); do docker_answers && return 0; sleep 0.5; done
    fi
    DOCKER_PROBLEM="systemctl start docker did not bring up an engine ($DOCKER_PROBLEM); see: journalctl -u docker"
    return 1
  fi
  log "starting dockerd (no systemd here); its log is $DOCKERD_LOG"
  local pid
  setsid nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
  pid=$!
  for _ in $(seq 1 60); do
    docker_answers && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      DOCKER_PROBLEM="dockerd exited at once; its last words ($DOCKERD_LOG): $(tail -n 3 "$DOCKERD_LOG" | tr '\n' ' ')"
      case "$DOCKER_PROBLEM" in
        *"pid file found"*|*"docker.pid"*)
          DOCKER_PROBLEM="$DOCKER_PROBLEM. Another dockerd owns /var/run/docker.pid (perhaps in another container or PID namespace) but does not answer here: stop it, or make its socket reachable as /var/run/docker.sock" ;;
      esac
      return 1
    fi
    sleep 0.5
  done
  DOCKER_PROBLEM="dockerd (pid $pid) is running but did not answer within 30 s; its log: $DOCKERD_LOG"
  return 1
}

link_command() {
  # `nsgraph` on the PATH: a link to this set-up's virtualenv, replaced only when it is a
  # link (a file someone put there by hand is left alone, and said so).
  local link=/usr/local/bin/nsgraph target="$VENV/bin/nsgraph"
  [ "$(readlink "$link" 2>/dev/null)" = "$target" ] && return 0
  if [ -e "$link" ] && [ ! -L "$link" ]; then
    log "warning: $link exists and is not a link; leaving it (this set-up's command is $target)"
    return 0
  fi
  mkdir -p /usr/local/bin
  ln -sfn "$target" "$link"
  log "linked $link -> $target"
}

# Named one by one: packages arrive with --no-install-recommends, so nothing a Recommends
# would bring may be relied on.  graphviz, jq, curl: the README's and --help's examples
# pipe into `dot` and `jq` and scrape /metrics with curl.  CI checks these lists
# (.ci/package_audit.py).
BASE_PACKAGES=(python3-bpfcc python3-venv python3-pip util-linux iproute2 procps docker.io busybox-static
               ca-certificates graphviz jq curl)
TEST_PACKAGES=(chromium shellcheck debootstrap qemu-system-x86 qemu-utils e2fsprogs fonts-dejavu-core gcc
               libc6-dev systemd ruby nats-server openssl podman)

log "nsgraph set-up ($MODE) in $REPO"
apt_install "${BASE_PACKAGES[@]}"
# docker.io only recommends apparmor, but where the kernel enables AppArmor (Debian's and
# Ubuntu's do) dockerd without apparmor_parser refuses to start any container.
if [ "$(cat /sys/module/apparmor/parameters/enabled 2>/dev/null)" = Y ]; then
  apt_install apparmor
fi
if [ "$MODE" = test ]; then
  apt_install "${TEST_PACKAGES[@]}"
  # vagrant is packaged by Debian but not by every Ubuntu release.
  # vagrant-libvirt is only a Recommends of vagrant, and without a provider plugin
  # `vagrant validate` finds "no usable default provider".  The `vagrant up` test
  # (tests/infra/test_vagrant_up.py) runs its own libvirtd: its management network
  # needs dnsmasq (only a Recommends) and iptables for the NAT.
  if apt_has vagrant; then
    apt_install vagrant vagrant-libvirt libvirt-daemon-system dnsmasq-base iptables
  else
    log "vagrant is not packaged here; the Vagrantfile tests will say so"
  fi
  # bpftool cross-checks BTF offsets; Ubuntu ships it only inside linux-tools.
  if apt_has bpftool; then apt_install bpftool; fi
fi
install_headers
mount_tracefs
setup_venv "$MODE"
link_command
if [ "$(readlink /usr/local/bin/nsgraph 2>/dev/null)" = "$VENV/bin/nsgraph" ]; then
  log "nsgraph is at $VENV/bin/nsgraph, on the PATH as /usr/local/bin/nsgraph"
else
  log "nsgraph is at $VENV/bin/nsgraph"
fi

# Arguments after the mode go to nsgraph serve or pytest; a leading -- is optional.
[ "${1:-}" = "--" ] && shift

case "$MODE" in
  install)
    "$VENV/bin/nsgraph" doctor || true
    ;;
  run)
    # Docker is optional for the dashboard: without it the demos show as unavailable.
    if ! start_dockerd; then
      log "warning: Docker is not usable: $DOCKER_PROBLEM"
      log "starting the dashboard without it: tracing works; container names and the Docker demos need it"
    fi
    # Deliberately no quotes: NSGRAPH_SERVE_ARGS holds several arguments.
    # shellcheck disable=SC2086
    exec "$VENV/bin/nsgraph" serve ${NSGRAPH_SERVE_ARGS:-} "$@"
    ;;
  test)
    start_dockerd || die "the tests need a Docker engine: $DOCKER_PROBLEM"
    "$VENV/bin/nsgraph" demo-image --quiet
    cd "$REPO"
    # shellcheck disable=SC2206  # PYTEST_ARGS holds several arguments
    PYTEST=("$VENV/bin/python" -m pytest ${PYTEST_ARGS:-} "$@")
    if [ -n "${NSGRAPH_PACKAGE_AUDIT:-}" ]; then
      exec "$VENV/bin/python" "$REPO/.ci/package_audit.py" run --named "${NAMED_PACKAGES[*]}" \
        --report "$NSGRAPH_PACKAGE_AUDIT" -- "${PYTEST[@]}"
    fi
    exec "${PYTEST[@]}"
    ;;
  fleet-server|fleet-agent|fleet-dashboard)
    # shellcheck source=scripts/fleet-setup.sh
    . "$REPO/scripts/fleet-setup.sh"
    "fleet_${MODE#fleet-}" "$@"
    ;;
esac
