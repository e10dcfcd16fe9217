#!/usr/bin/env bash
# Every provider feature of the binary compiles on its own, and so do the provider sets users
# build (a custom binary picks its adapters with Cargo features). `cargo check` only: cheap.
set -euo pipefail
cd "$(dirname "$0")/.."

sets=(
  ""                          # no provider at all: the blob tools only
  sqlite fs devnet postgres mongo redis rabbit sqs s3 kafka eth
  embedded
  "postgres,redis,s3"         # the custom-binary example's set, without the simulated world
  "postgres,redis,s3,devnet"
  "postgres,rabbit,fs,devnet"
  "mongo,sqs,s3,devnet"
  "sqlite,kafka,fs,devnet"
  "sqlite,fs,devnet,eth"       # the eth example's set
  full
)
for f in "${sets[@]}"; do
  printf '  --features "%s"\n' "$f"
  cargo check -p orchestrator --no-default-features --features "$f" --locked --quiet
done
