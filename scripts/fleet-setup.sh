# shellcheck shell=bash
# The fleet modes of scripts/setup.sh (README: Fleet).  Sourced by setup.sh, which
# provides log, die, apt_install, start_dockerd, REPO and VENV; nothing here runs alone.
#
#   setup.sh fleet-server [nsgraph fleet init arguments]   the central host: CA, certificates,
#       per-node credentials, nats-server with JetStream (systemd unit nsgraph-nats), the stream
#   setup.sh fleet-agent BUNDLE_DIR [nsgraph agent arguments]   a node: its agent as the
#       systemd unit nsgraph-agent (BUNDLE_DIR: the agent-NODE folder copied from the central host)
#   setup.sh fleet-dashboard [nsgraph serve arguments]   the fleet dashboard, in the foreground
#
# Environment: NSGRAPH_FLEET_DIR (/etc/nsgraph/fleet), NSGRAPH_FLEET_RETENTION (arguments for
# `nsgraph fleet streams`, default "--max-age 7d --max-bytes 10G"), NSGRAPH_FLEET_DETACHED=1
# (no systemd units even where systemd runs: processes with pid files in NSGRAPH_FLEET_RUN_DIR,
# default /run/nsgraph, and logs in NSGRAPH_FLEET_LOG_DIR, default /var/log).

FLEET_DIR="${NSGRAPH_FLEET_DIR:-/etc/nsgraph/fleet}"
FLEET_RUN_DIR="${NSGRAPH_FLEET_RUN_DIR:-/run/nsgraph}"
FLEET_LOG_DIR="${NSGRAPH_FLEET_LOG_DIR:-/var/log}"

fleet_systemd() {
  [ "${NSGRAPH_FLEET_DETACHED:-0}" != 1 ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1
}

# fleet_unit TEMPLATE NAME KEY=VALUE...: scripts/TEMPLATE with @KEY@ filled in, as NAME.
fleet_unit() {
  local template="$REPO/scripts/$1" unit="/etc/systemd/system/$2" text pair
  shift 2
  text="$(cat "$template")"
  for pair in "$@"; do
    text="${text//@${pair%%=*}@/${pair#*=}}"
  done
  if [ "$(cat "$unit" 2>/dev/null)" != "$text" ]; then
    printf '%s\n' "$text" > "$unit"
    systemctl daemon-reload
  fi
}

# fleet_detached NAME COMMAND...: COMMAND in the background with $FLEET_RUN_DIR/NAME.pid and
# $FLEET_LOG_DIR/nsgraph-NAME.log, where there is no systemd; a running one is stopped first.
fleet_detached() {
  local name="$1" logfile="$FLEET_LOG_DIR/nsgraph-$1.log" pid
  shift
  mkdir -p "$FLEET_RUN_DIR"
  pid="$(cat "$FLEET_RUN_DIR/$name.pid" 2>/dev/null || true)"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    sleep 1
  fi
  log "no systemd here: starting $name detached (log $logfile)"
  nohup "$@" >>"$logfile" 2>&1 &
  echo $! > "$FLEET_RUN_DIR/$name.pid"
}

fleet_wait_port() {  # host port seconds
  local _
  for _ in $(seq 1 $(( $3 * 2 ))); do
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
    sleep 0.5
  done
  return 1
}

fleet_server() {
  apt_install nats-server openssl
  "$VENV/bin/nsgraph" fleet init --dir "$FLEET_DIR" "$@" || die "nsgraph fleet init failed (message above)"
  local conf store port
  conf="$(find "$FLEET_DIR" -maxdepth 1 -name 'nats-server-*.conf' | sort | head -n 1)"
  [ -n "$conf" ] || die "no nats-server configuration in $FLEET_DIR"
  if [ "$(find "$FLEET_DIR" -maxdepth 1 -name 'nats-server-*.conf' | wc -l)" -gt 1 ]; then
    log "a cluster: this host runs $(basename "$conf"); start the other members' configurations on their hosts"
  fi
  store="$(sed -n 's/^jetstream { store_dir: "\([^"]*\)".*/\1/p' "$conf")"
  port="$(sed -n 's/^listen: "[^"]*:\([0-9]*\)"/\1/p' "$conf")"
  # nats-server runs as the nats user: it reads its certificate and key, and owns its storage.
  mkdir -p "$store"
  chown -R nats:nats "$store"
  chgrp -R nats "$FLEET_DIR/server"
  chmod 750 "$FLEET_DIR/server"
  chmod 640 "$FLEET_DIR/server/server.key"
  chmod 644 "$conf"
  if fleet_systemd; then
    if systemctl is-active --quiet nats-server.service; then
      log "stopping and disabling Debian's default nats-server.service (127.0.0.1:4222, no TLS); nsgraph-nats.service replaces it"
      systemctl disable --now nats-server.service >/dev/null 2>&1 || true
    fi
    fleet_unit nsgraph-nats.service nsgraph-nats.service "REPO=$REPO" "CONF=$conf"
    systemctl enable nsgraph-nats.service >/dev/null 2>&1
    systemctl reload-or-restart nsgraph-nats.service
  else
    fleet_detached nats runuser -u nats -- /usr/sbin/nats-server -c "$conf"
  fi
  fleet_wait_port 127.0.0.1 "$port" 30 || die "nats-server did not listen on port $port; see journalctl -u nsgraph-nats or $FLEET_LOG_DIR/nsgraph-nats.log"
  # shellcheck disable=SC2086  # several arguments on purpose
  "$VENV/bin/nsgraph" fleet streams --creds "$FLEET_DIR/admin" ${NSGRAPH_FLEET_RETENTION:---max-age 7d --max-bytes 10G} \
    || die "creating the fleet's stream failed (message above)"
  log "fleet server ready.  For each node: copy $FLEET_DIR/agent-NODE/ to it and run there"
  log "  sudo scripts/setup.sh fleet-agent /path/to/agent-NODE"
  log "dashboard: sudo scripts/setup.sh fleet-dashboard   (nsgraph serve --fleet --fleet-creds $FLEET_DIR/dashboard)"
}

fleet_agent() {
  local bundle="${1:-}" node dest
  if [ -z "$bundle" ] || [ ! -f "$bundle/identity.json" ]; then
    die "usage: setup.sh fleet-agent BUNDLE_DIR [agent arguments]; BUNDLE_DIR is the agent-NODE folder nsgraph fleet init made on the central host"
  fi
  shift
  node="$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["node"] or "")' "$bundle/identity.json")"
  [ -n "$node" ] || die "$bundle is not an agent's bundle (identity.json names no node)"
  dest="$FLEET_DIR/agent-$node"
  if [ "$(cd "$bundle" && pwd)" != "$dest" ]; then
    install -d -m 700 "$dest"
    cp -a "$bundle/." "$dest/"
  fi
  chmod 700 "$dest"
  chmod 600 "$dest/client.key"
  start_dockerd || true
  if fleet_systemd; then
    fleet_unit nsgraph-agent.service nsgraph-agent.service "REPO=$REPO" "NSGRAPH=$VENV/bin/nsgraph" \
      "CREDS=$dest" "AGENT_ARGS=$*"
    systemctl enable nsgraph-agent.service >/dev/null 2>&1
    systemctl restart nsgraph-agent.service
    log "the agent of node $node runs as nsgraph-agent.service (logs: journalctl -u nsgraph-agent -f)"
  else
    fleet_detached agent "$VENV/bin/nsgraph" agent --creds "$dest" "$@"
  fi
}

fleet_dashboard() {
  # shellcheck disable=SC2086  # NSGRAPH_SERVE_ARGS holds several arguments on purpose
  exec "$VENV/bin/nsgraph" serve --fleet --fleet-creds "$FLEET_DIR/dashboard" ${NSGRAPH_SERVE_ARGS:-} "$@"
}
