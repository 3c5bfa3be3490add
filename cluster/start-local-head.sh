#!/usr/bin/env bash
# Start a single-machine Ray head on loopback (node address 127.0.0.1, dashboard / Jobs API on 127.0.0.1:8265)
# with Ray token authentication on, for promptfarm searches submitted as Ray jobs from the same machine.
#
#   cluster/start-local-head.sh                 # all cores and GPUs of this machine
#   NUM_CPUS=2 cluster/start-local-head.sh      # cap what Ray may schedule (the 2-core dev/CI machines)
#   RAY_AUTH_MODE=token ray job submit --address http://127.0.0.1:8265 --working-dir . \
#     -- python -m jobs.search jobs/configs/smoke.yaml
#   ray stop                                    # when done
#
# Token auth: Ray 2.60 turns it on by default for clusters that `ray.init()` starts itself, but `ray start` only
# does so when RAY_AUTH_MODE=token is set or a token already exists in ~/.ray/auth_token. This script sets the mode
# and creates the token if missing, so the head always requires it. Clients on an explicit address (ray job
# submit --address ...) send it only in token mode: export RAY_AUTH_MODE=token (the token is read from
# ~/.ray/auth_token, or $RAY_AUTH_TOKEN / $RAY_AUTH_TOKEN_PATH). `promptfarm submit` sends it either way.
# RAY_AUTH_MODE=disabled opts out; not recommended even on loopback: any local user could then run code as you.
set -euo pipefail

PORT="${RAY_PORT:-6379}"
DASHBOARD_PORT="${RAY_DASHBOARD_PORT:-8265}"

export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"
if [[ "$RAY_AUTH_MODE" == "token" ]]; then
  ray get-auth-token --generate >/dev/null  # no-op when ~/.ray/auth_token already exists
fi

args=(--head --node-ip-address 127.0.0.1 --port "$PORT"
      --dashboard-host 127.0.0.1 --dashboard-port "$DASHBOARD_PORT")
if [[ -n "${NUM_CPUS:-}" ]]; then
  args+=(--num-cpus "$NUM_CPUS")
fi
ray start "${args[@]}"

cat <<EOF

Ray head on 127.0.0.1:$PORT, dashboard and Jobs API on http://127.0.0.1:$DASHBOARD_PORT (token required).
  export RAY_AUTH_MODE=token
  ray job submit --address http://127.0.0.1:$DASHBOARD_PORT --working-dir . -- python -m jobs.search jobs/configs/smoke.yaml
  promptfarm search jobs/configs/smoke.yaml   # also runs on this head: ray.init() finds the local cluster
Dashboard in a browser: open the URL and paste the token from 'ray get-auth-token'.
From another machine: ssh -N -L $DASHBOARD_PORT:127.0.0.1:$DASHBOARD_PORT THIS_HOST   (never open the port itself)
EOF
