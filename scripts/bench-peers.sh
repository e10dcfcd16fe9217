#!/usr/bin/env bash
# Installs the benchmark peers that are not Rust crates, outside the clone:
# graphile-worker 0.17.3 (npm) into ~/.cache/orch/graphile. Idempotent.
set -euo pipefail
dir="${ORCH_GRAPHILE_DIR:-$HOME/.cache/orch/graphile}"
if [ ! -d "$dir/node_modules/graphile-worker" ]; then
  mkdir -p "$dir"
  printf '{"name":"orch-graphile-bench","private":true,"dependencies":{"graphile-worker":"0.17.3"}}\n' >"$dir/package.json"
  (cd "$dir" && npm install --no-audit --no-fund --loglevel=error)
fi
echo "graphile-worker ready in $dir"
