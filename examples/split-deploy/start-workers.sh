#!/usr/bin/env bash
# Start the two workers of a split deployment by hand, each on an owner-only
# ipc:// socket in $OMNI_DEPLOY_DIR (default: $XDG_RUNTIME_DIR/omni-deploy or
# /tmp/omni-deploy-$UID), and wait until both listen.
#   examples/split-deploy/start-workers.sh [WORKER...]   (default: lm tok)
# Each worker logs to $OMNI_DEPLOY_DIR/<name>.log and writes its pid to <name>.pid.
# Environment: OMNI (the omni executable; default build/bin/omni, then PATH),
# OMNI_PLUGIN_PATH (plugin folders the workers search), OMNI_LOG.
set -euo pipefail
OMNI=${OMNI:-$( [ -x build/bin/omni ] && echo build/bin/omni || command -v omni )}
DIR=${OMNI_DEPLOY_DIR:-}
if [ -z "$DIR" ]; then
  if [ -n "${XDG_RUNTIME_DIR:-}" ]; then DIR=$XDG_RUNTIME_DIR/omni-deploy; else DIR=/tmp/omni-deploy-$(id -u); fi
fi
mkdir -p "$DIR" && chmod 700 "$DIR"        # the sockets' folder: this user only
names=("$@"); [ ${#names[@]} -gt 0 ] || names=(lm tok)
for n in "${names[@]}"; do
  if [ -f "$DIR/$n.pid" ] && kill -0 "$(cat "$DIR/$n.pid")" 2>/dev/null; then
    echo "worker $n already runs (pid $(cat "$DIR/$n.pid"))"; continue
  fi
  rm -f "$DIR/$n.sock"
  nohup "$OMNI" worker --listen "ipc://$DIR/$n.sock" --threads 2 >"$DIR/$n.log" 2>&1 &
  echo $! >"$DIR/$n.pid"
done
for n in "${names[@]}"; do
  for _ in $(seq 100); do [ -S "$DIR/$n.sock" ] && break; sleep 0.05; done
  [ -S "$DIR/$n.sock" ] || { echo "worker $n did not start; see $DIR/$n.log" >&2; exit 1; }
  echo "worker $n: pid $(cat "$DIR/$n.pid"), ipc://$DIR/$n.sock"
done
echo "export OMNI_DEPLOY_DIR=$DIR"
