#!/usr/bin/env bash
# The whole test suite: formatting, lints, the SDK-free core check, docs, every test.
# Installs and starts what the tests need (scripts/services.sh) first. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/orch/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export RUST_BACKTRACE=1

step() { printf '\n==> %s\n' "$*"; }

if [ -x scripts/services.sh ]; then
  step "services"
  # shellcheck source=/dev/null
  source scripts/services.sh
fi

step "rustfmt"
cargo fmt --all --check

step "clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "orch-core depends on no SDK"
scripts/check-core-deps.sh

step "docs (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

step "tests"
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --profile ci
  cargo test --workspace --doc --locked --quiet
else
  cargo test --workspace --locked
fi
