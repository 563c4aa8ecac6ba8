#!/usr/bin/env bash
# Provisions the nsgraph demo VM: Vagrant runs it as root inside the VM, and it
# works the same on any Debian 12 / Ubuntu 24.04 machine or container, as root.
#
#   1. scripts/setup.sh install: the one set-up (packages, kernel headers,
#      tracefs, the virtualenv); nothing of it is repeated here
#   2. Docker running (for the demo scenarios; optional: a machine where dockerd
#      cannot run still gets the dashboard, and this script says why)
#   3. the demo image: nsgraph demo-image
#   4. the dashboard as a service: a systemd unit where systemd is PID 1 (so it
#      survives reboots), else a detached process with a pid file and a log
#   5. waits until the dashboard answers, then prints its URL with the token
#
#   scripts/provision.sh               provision (what Vagrant runs)
#   scripts/provision.sh --print-unit  print the systemd unit it would install
#
# Running it again is safe: it updates the install and restarts the dashboard.
# Progress goes to stdout, ending with the URL line; errors go to stderr.
# Environment (all optional):
#   NSGRAPH_REPO       the nsgraph project directory (default: this script's ..;
#                      the Vagrantfile passes the synced folder, /opt/nsgraph)
#   NSGRAPH_STATE_DIR  token, URL, status and the virtualenv (default /var/lib/nsgraph)
#   NSGRAPH_PORT       port the dashboard listens on inside the machine (default 5000)
#   NSGRAPH_URL_HOST, NSGRAPH_URL_PORT
#                      where the browser reaches it (default 127.0.0.1 and NSGRAPH_PORT;
#                      the Vagrantfile passes the forwarded host port)
#   NSGRAPH_WAIT       seconds to wait for the dashboard to answer (default 180)
set -euo pipefail

# Vagrant uploads this script to /tmp/vagrant-shell and runs it from there, so
# the Vagrantfile names the project directory; run by hand, it is this file's.
REPO="${NSGRAPH_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
STATE_DIR="${NSGRAPH_STATE_DIR:-/var/lib/nsgraph}"
# Outside the project tree: the tree may be a synced folder from the host, whose
# own .venv (if any) belongs to the host and must not be reused or overwritten.
export NSGRAPH_VENV="${NSGRAPH_VENV:-$STATE_DIR/venv}"
PORT="${NSGRAPH_PORT:-5000}"
URL_HOST="${NSGRAPH_URL_HOST:-127.0.0.1}"
URL_PORT="${NSGRAPH_URL_PORT:-$PORT}"
WAIT="${NSGRAPH_WAIT:-180}"
TOKEN_FILE="$STATE_DIR/token"
URL_FILE="$STATE_DIR/url"
STATUS_FILE="$STATE_DIR/provision.status"
PID_FILE="/run/nsgraph/serve.pid"
SERVE_LOG="/var/log/nsgraph-serve.log"
DOCKERD_LOG="/var/log/nsgraph-dockerd.log"
UNIT=/etc/systemd/system/nsgraph.service
NSGRAPH="$NSGRAPH_VENV/bin/nsgraph"

log() { printf '[provision] %s\n' "$*"; }
die() { printf '[provision] error: %s\n' "$*" >&2; exit 1; }

# 0.0.0.0 because Vagrant's port forward (VirtualBox NAT, libvirt's forwarding)
# arrives on the VM's network interface, not on its loopback: a dashboard on
# 127.0.0.1 would be unreachable from the host.  --allow-remote is the explicit
# consent 'nsgraph serve' demands for that; the token is still required, and
# the Vagrantfile binds the host side to the host's 127.0.0.1 only.
SERVE_ARGS=(--host 0.0.0.0 --port "$PORT" --allow-remote --token-file "$TOKEN_FILE")

render_unit() {
  sed -e "s|@NSGRAPH@|$NSGRAPH|g" -e "s|@SERVE_ARGS@|${SERVE_ARGS[*]}|g" -e "s|@REPO@|$REPO|g" \
    "$REPO/scripts/nsgraph.service"
}

case "${1:-}" in
  "") ;;
  --print-unit) render_unit; exit 0 ;;
  -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
  *) die "unknown argument '$1' (use --print-unit, --help or nothing)" ;;
esac

if [ ! -f "$REPO/scripts/setup.sh" ] || [ ! -f "$REPO/scripts/nsgraph.service" ]; then
  die "no nsgraph project at '$REPO' (scripts/setup.sh missing): set NSGRAPH_REPO to the project directory"
fi
[ "$(id -u)" -eq 0 ] || die "run me as root (sudo $0): the set-up installs packages and the dashboard loads eBPF probes"
case "$PORT$URL_PORT" in *[!0-9]*) die "NSGRAPH_PORT and NSGRAPH_URL_PORT must be numbers" ;; esac
# These paths end up unquoted on a systemd ExecStart line.
case "$STATE_DIR$NSGRAPH_VENV" in *[[:space:]\"\'\\%\$]*) die "NSGRAPH_STATE_DIR and NSGRAPH_VENV must not contain spaces, quotes, '%', '\$' or '\\'" ;; esac

install -d -m 0755 "$STATE_DIR" /run/nsgraph
: > "$STATUS_FILE"
status() { printf '%s=%s\n' "$1" "$2" >> "$STATUS_FILE"; }

alive() {
  # A zombie counts as gone: under an init that does not reap (a container
  # whose PID 1 is a plain command) an exited dashboard stays one for ever.
  local state
  state="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)"
  [ -n "$state" ] && [ "$state" != Z ]
}

systemd_running() {
  # The test sd_booted(3) uses: systemd is PID 1 here.
  [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1
}

# --- 1. the set-up -----------------------------------------------------------
log "running scripts/setup.sh install (packages, headers, tracefs, virtualenv in $NSGRAPH_VENV)"
# Through bash: a synced folder (or a checkout on Windows) may have lost the exec bit.
bash "$REPO/scripts/setup.sh" install
[ -x "$NSGRAPH" ] || die "setup.sh finished but $NSGRAPH is missing"
PY="$NSGRAPH_VENV/bin/python"

# --- 2. Docker ---------------------------------------------------------------
DOCKER_PROBLEM=""

wait_docker() {
  for _ in $(seq 1 "$1"); do
    docker info >/dev/null 2>&1 && return 0
    sleep 1
  done
  return 1
}

stop_dockerd() {
  # dockerd's own pid file; after a restart it can be stale, its pid reused.
  local pid
  pid="$(cat /var/run/docker.pid 2>/dev/null || true)"
  if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ]; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do
      alive "$pid" || break
      sleep 0.5
    done
  fi
  rm -f /var/run/docker.pid
}

dockerd_by_hand() {
  # No systemd: start dockerd detached.
  stop_dockerd
  log "starting dockerd $* (no systemd here); log: $DOCKERD_LOG"
  setsid nohup dockerd "$@" >>"$DOCKERD_LOG" 2>&1 < /dev/null &
  wait_docker 40
}

start_docker() {
  command -v docker >/dev/null 2>&1 || { DOCKER_PROBLEM="docker is not installed"; return 1; }
  docker info >/dev/null 2>&1 && return 0
  if systemd_running; then
    log "starting docker.service"
    systemctl enable --now docker.service >/dev/null 2>&1 || true
    wait_docker 60 && return 0
    DOCKER_PROBLEM="docker.service did not start (see: journalctl -u docker)"
    return 1
  fi
  dockerd_by_hand && return 0
  # Inside a container /var/lib/docker usually sits on overlayfs, where the
  # overlay2 driver cannot stack; vfs is slow and large but works anywhere.
  log "dockerd did not come up with its default storage driver; retrying with --storage-driver vfs"
  dockerd_by_hand --storage-driver vfs && return 0
  DOCKER_PROBLEM="dockerd cannot run here; its last words: $(tail -n 3 "$DOCKERD_LOG" 2>/dev/null | tr '\n' ' ')"
  return 1
}

if start_docker; then
  status docker ok
  log "Docker is running ($(docker info --format '{{.Driver}}' 2>/dev/null) storage driver)"
else
  status docker "unavailable: $DOCKER_PROBLEM"
  log "WARNING: Docker is unavailable: $DOCKER_PROBLEM"
  log "WARNING: carrying on without it: the dashboard works, its demo scenarios will report Docker as unavailable"
fi

# --- 3. the demo image -------------------------------------------------------
if [ -z "$DOCKER_PROBLEM" ]; then
  log "building the demo image (nsgraph demo-image)"
  if "$NSGRAPH" demo-image --quiet; then
    status demo_image ok
  else
    status demo_image failed
    log "WARNING: 'nsgraph demo-image' failed (output above); the demo scenarios will not run until it succeeds: sudo $NSGRAPH demo-image"
  fi
else
  status demo_image "skipped: no Docker"
fi

# --- 4. the dashboard --------------------------------------------------------
if [ ! -s "$TOKEN_FILE" ]; then
  # Made here rather than by 'nsgraph serve' so the URL is known without
  # racing the server's first write; serve reads an existing token file.
  (umask 077; "$PY" -c 'import secrets; print(secrets.token_urlsafe(32))' > "$TOKEN_FILE.new")
  mv "$TOKEN_FILE.new" "$TOKEN_FILE"
fi
chmod 0600 "$TOKEN_FILE"
TOKEN="$(tr -d '[:space:]' < "$TOKEN_FILE")"


stop_detached() {
  local pid
  pid="$(cat "$PID_FILE" 2>/dev/null || true)"
  [ -n "$pid" ] || return 0
  # The pid file may be stale and its pid reused: only stop an nsgraph server.
  if alive "$pid" && grep -q 'serve' "/proc/$pid/cmdline" 2>/dev/null; then
    log "stopping the previous dashboard (pid $pid)"
    kill "$pid" 2>/dev/null || true
    # A serve stopped while it still starts finishes compiling its probes first: give
    # it 30 s, then SIGKILL, and wait until it is gone (it holds the port till then).
    for _ in $(seq 1 60); do
      alive "$pid" || break
      sleep 0.5
    done
    if alive "$pid"; then
      log "the previous dashboard did not stop within 30 s: killing it"
      kill -9 "$pid" 2>/dev/null || true
      for _ in $(seq 1 20); do
        alive "$pid" || break
        sleep 0.25
      done
    fi
  fi
  rm -f "$PID_FILE"
}

if systemd_running; then
  log "installing $UNIT"
  render_unit > "$UNIT.new"
  mv "$UNIT.new" "$UNIT"
  systemctl daemon-reload
  systemctl enable nsgraph.service >/dev/null 2>&1
  systemctl restart nsgraph.service
  status service systemd
  HOW="systemd unit nsgraph.service (enabled: starts at boot; logs: journalctl -u nsgraph; restart: systemctl restart nsgraph)"
else
  stop_detached
  log "systemd is not PID 1 here: starting the dashboard detached (setsid nohup)"
  setsid nohup "$NSGRAPH" serve "${SERVE_ARGS[@]}" >>"$SERVE_LOG" 2>&1 < /dev/null &
  echo "$!" > "$PID_FILE"
  status service nohup
  HOW="detached process (setsid nohup), pid $(cat "$PID_FILE") in $PID_FILE, log $SERVE_LOG; no systemd here, so it does not come back after a restart: run this script again"
fi

# --- 5. wait for it and print the URL ------------------------------------------
log "waiting up to ${WAIT}s for the dashboard on port $PORT (it compiles its eBPF probes first)"
answer=""
deadline=$((SECONDS + WAIT))
while [ "$SECONDS" -lt "$deadline" ]; do
  answer="$("$PY" - "$PORT" "$TOKEN" <<'EOF' 2>/dev/null || true
import sys, urllib.error, urllib.parse, urllib.request
port, token = sys.argv[1], sys.argv[2]
url = "http://127.0.0.1:%s/api/status?token=%s" % (port, urllib.parse.quote(token))
try:
    with urllib.request.urlopen(url, timeout=3) as r:
        print(r.status)
except urllib.error.HTTPError as e:
    print(e.code)
EOF
)"
  [ "$answer" = 200 ] && break
  if ! systemd_running && ! alive "$(cat "$PID_FILE")"; then
    tail -n 20 "$SERVE_LOG" >&2 || true
    die "the dashboard exited at start-up (log above, in $SERVE_LOG)"
  fi
  sleep 1
done
if [ "$answer" != 200 ]; then
  if systemd_running; then journalctl -u nsgraph.service -n 20 --no-pager >&2 || true
  else tail -n 20 "$SERVE_LOG" >&2 || true; fi
  die "the dashboard did not answer on port $PORT within ${WAIT}s (last HTTP status: ${answer:-none}); log above"
fi

URL="http://$URL_HOST:$URL_PORT/?token=$TOKEN"
(umask 077; echo "$URL" > "$URL_FILE")
status url_file "$URL_FILE"
log "the dashboard runs as a $HOW"
log "get this URL again with: sudo cat $URL_FILE   (from the host: vagrant ssh -c 'sudo cat $URL_FILE')"
[ -z "$DOCKER_PROBLEM" ] || log "note: Docker is unavailable here ($DOCKER_PROBLEM); demo scenarios will say so"
echo
echo "nsgraph dashboard: $URL"
