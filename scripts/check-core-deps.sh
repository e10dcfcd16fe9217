#!/usr/bin/env bash
# orch-core must not depend on any provider SDK: the core is the contract every adapter
# implements, and pulling an SDK into it would leak its types and build cost everywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
sdk='^(mongodb|bson|aws-sdk-[a-z0-9-]+|aws-config|aws-smithy-[a-z-]+|rdkafka|rdkafka-sys|lapin|redis|alloy[a-z0-9-]*|starknet[a-z0-9-]*|sqlx[a-z-]*|rusqlite|libsqlite3-sys|axum|c-kzg) '
tree=$(cargo tree -p orch-core -e normal --prefix none --locked)
found=$(printf '%s\n' "$tree" | grep -E "$sdk" | cut -d' ' -f1 | sort -u || true)
if [ -n "$found" ]; then
  echo "orch-core depends on SDK crates: $found" >&2
  echo "move that code into an adapter crate under adapters/" >&2
  exit 1
fi
echo "orch-core: $(printf '%s\n' "$tree" | sort -u | wc -l) crates in its tree, no SDK"
