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

# Every provider adapter compiled into the binary (--all-features), so its end-to-end tests
# run against the live services; and no test may skip for want of a service.
export ORCH_REQUIRE_SERVICES=1

step "rustfmt"
cargo fmt --all --check

step "clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy --workspace --all-targets --locked --all-features -- -D warnings

step "every provider feature set of the binary compiles"
scripts/check-features.sh

step "orch-core depends on no SDK"
scripts/check-core-deps.sh

step "committed contract artefacts reproduce (solc from npm)"
scripts/build-contracts.sh --check

step "cargo deny (licenses, bans, sources)"
# Built once into a cache outside the clone (about 6 minutes cold on 2 cores). Advisories need
# the RustSec database from the network, which this machine cannot reach.
tools="${ORCH_TOOLS_DIR:-$HOME/.cache/orch/tools}"
if [ ! -x "$tools/bin/cargo-deny" ]; then
  cargo install cargo-deny --version 0.20.2 --locked --root "$tools" --quiet
fi
"$tools/bin/cargo-deny" --log-level error check licenses bans sources

step "docs (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

step "fuzz (bounded)"
scripts/fuzz.sh

step "tests"
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --profile ci --all-features
  cargo test --workspace --doc --locked --quiet
else
  cargo test --workspace --locked --all-features
fi
