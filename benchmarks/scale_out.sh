#!/usr/bin/env bash
# Runs per minute of `fmtrain sweep --seeds 2` (full data) on a loopback Ray cluster of one node,
# then of two nodes; each node keeps to a core of its own (taskset), as two one-core machines.
set -euo pipefail
cd "$(dirname "$0")/.." && . .venv/bin/activate
export TEAM=${TEAM:-$(mktemp -d)} RAY_PORT=6391 RAY_HEAD=127.0.0.1 RAY_AUTH_MODE=token
export RAY_AUTH_TOKEN=$(python -c "import secrets; print(secrets.token_hex(32))")
rm -rf $TEAM && mkdir -p $TEAM
mlflow server --backend-store-uri sqlite:///$TEAM/mlflow.db --artifacts-destination $TEAM/artifacts \
  --host 127.0.0.1 --port 5077 --workers 2 > $TEAM/server.log 2>&1 &
SERVER=$!
trap 'scripts/team.sh stop ray-node ray-head || true; kill $SERVER || true' EXIT
until curl -sf http://127.0.0.1:5077/health >/dev/null; do sleep 1; done
RAY_CPUS=1 taskset -c 0 scripts/team.sh ray-head
echo "== one node"
python benchmarks/bench.py --chapter --seeds 2 --workers 2 --ray-address 127.0.0.1:$RAY_PORT --store http://127.0.0.1:5077 2>/dev/null | sed -n 1,12p
RAY_CPUS=1 taskset -c 1 scripts/team.sh ray-node
echo "== two nodes"
python benchmarks/bench.py --chapter --seeds 2 --workers 2 --ray-address 127.0.0.1:$RAY_PORT --store http://127.0.0.1:5077 2>/dev/null | sed -n 1,12p
