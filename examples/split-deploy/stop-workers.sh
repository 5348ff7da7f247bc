#!/usr/bin/env bash
# Stop the workers started by start-workers.sh (SIGTERM: each frees its stages
# and removes its shared-memory segments), then their sockets and pid files.
#   examples/split-deploy/stop-workers.sh
set -uo pipefail
DIR=${OMNI_DEPLOY_DIR:-}
if [ -z "$DIR" ]; then
  if [ -n "${XDG_RUNTIME_DIR:-}" ]; then DIR=$XDG_RUNTIME_DIR/omni-deploy; else DIR=/tmp/omni-deploy-$(id -u); fi
fi
for pidfile in "$DIR"/*.pid; do
  [ -e "$pidfile" ] || continue
  pid=$(cat "$pidfile"); n=$(basename "$pidfile" .pid)
  if kill -TERM "$pid" 2>/dev/null; then
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -0 "$pid" 2>/dev/null && { echo "worker $n (pid $pid) did not stop; killing it"; kill -KILL "$pid"; }
    echo "worker $n stopped"
  fi
  rm -f "$pidfile" "$DIR/$n.sock"
done
