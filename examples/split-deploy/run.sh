#!/usr/bin/env bash
# The coordinator: run a pipeline whose placement: lists the hand-started
# workers' endpoints. From the repository root:
#   examples/split-deploy/start-workers.sh
#   examples/split-deploy/run.sh --prompt "v1.2.3"             # text-tiny-deploy.yaml
#   PIPELINE=examples/split-deploy/mmu-deploy.yaml examples/split-deploy/run.sh \
#       --image cat.png --prompt "Please describe it."         # after start-workers.sh vision lm
#   examples/split-deploy/stop-workers.sh
# Extra arguments go to `omni run`.
set -euo pipefail
OMNI=${OMNI:-$( [ -x build/bin/omni ] && echo build/bin/omni || command -v omni )}
if [ -z "${OMNI_DEPLOY_DIR:-}" ]; then
  if [ -n "${XDG_RUNTIME_DIR:-}" ]; then OMNI_DEPLOY_DIR=$XDG_RUNTIME_DIR/omni-deploy; else OMNI_DEPLOY_DIR=/tmp/omni-deploy-$(id -u); fi
fi
export OMNI_DEPLOY_DIR
exec "$OMNI" run "${PIPELINE:-examples/split-deploy/text-tiny-deploy.yaml}" "$@"
