#!/bin/sh
# Runs N ragway gateways on loopback against one database, behind HAProxy: what
# docs/deployment.md describes, on one machine. `task cluster` runs it (N defaults to
# 3: `task cluster -- 5`); tests run it directly.
#
# Environment: DATABASE_URL (required: a migrated database), RAGWAY_BIN (default
# bin/ragway), CLUSTER_PORT (the balancer's port, default 8090; gateway i listens on
# CLUSTER_PORT+i), CLUSTER_DIR (configs and logs, default .data/cluster), HAPROXY
# (default haproxy). Every gateway serves the embedded defaults (RAGWAY_* variables
# set for the script apply to all of them), with HAProxy (on loopback) as their trusted
# proxy: its X-Forwarded-For names the clients. Ctrl-C (or SIGTERM) stops them all.
set -eu

n=${1:-3}
case $n in
  '' | *[!0-9]*) echo "cluster: the number of gateways must be a number, not '$n'" >&2; exit 2 ;;
esac
if [ "$n" -lt 1 ] || [ "$n" -gt 32 ]; then
  echo "cluster: between 1 and 32 gateways, not $n" >&2
  exit 2
fi
: "${DATABASE_URL:?cluster: DATABASE_URL must name the database the gateways share}"
bin=${RAGWAY_BIN:-bin/ragway}
port=${CLUSTER_PORT:-8090}
dir=${CLUSTER_DIR:-.data/cluster}
haproxy=${HAPROXY:-haproxy}
mkdir -p "$dir"

pids=""
stop() {
  trap - INT TERM EXIT
  # shellcheck disable=SC2086
  [ -n "$pids" ] && kill -TERM $pids 2>/dev/null || true
  for p in $pids; do
    wait "$p" 2>/dev/null || true
  done
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cfg="$dir/haproxy.cfg"
cat >"$cfg" <<CFG
# Written by deploy/cluster.sh: $n gateways behind one address.
global
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    # Streams (SSE) and WebSockets stay open while a model answers or a socket idles.
    timeout client 1h
    timeout server 1h
    timeout tunnel 1h
    option forwardfor
frontend ragway
    bind 127.0.0.1:$port
    default_backend gateways
backend gateways
    # The least busy gateway: every gateway serves every request (conversations,
    # knowledge bases and limits are the database's); a WebSocket stays on the
    # gateway it opened on, and reconnects anywhere.
    balance leastconn
    option httpchk GET /readyz
    http-check expect status 200
CFG
i=1
while [ "$i" -le "$n" ]; do
  p=$((port + i))
  echo "    server gw$i 127.0.0.1:$p check inter 1s fall 2 rise 1" >>"$cfg"
  RAGWAY_LISTEN="127.0.0.1:$p" RAGWAY_DATABASE_URL="$DATABASE_URL" RAGWAY_WEB_TRUSTED_PROXIES=127.0.0.1 "$bin" serve >"$dir/gw$i.log" 2>&1 &
  pids="$pids $!"
  i=$((i + 1))
done
"$haproxy" -c -q -f "$cfg"
echo "cluster: $n gateways (logs in $dir/gw*.log) behind http://127.0.0.1:$port"
"$haproxy" -db -f "$cfg" &
pids="$pids $!"
wait
