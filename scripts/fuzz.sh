#!/usr/bin/env bash
# Bounded fuzzing of orch-blob's decoders (crates/orch-blob/fuzz, a cargo-fuzz project outside
# the workspace). Needs the nightly toolchain; skips (exit 0) without it. Installs cargo-fuzz
# into a cache outside the clone on first use. Each target runs FUZZ_SECONDS (default 20) from a
# seed corpus made at runtime in a temp dir (plus ../shared/vectors when present; nothing is
# written into the repo). Exits non-zero if any target crashes, printing the crash input path.
# Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

seconds="${FUZZ_SECONDS:-20}"
# orch-blob and orch-core forbid unsafe code, so AddressSanitizer finds nothing there that a panic
# would not, and it slows every run several times over; FUZZ_SANITIZER=address turns it back on.
sanitizer="${FUZZ_SANITIZER:-none}"
targets=(decode_blob decompress parse_inputs)
cache="$HOME/.cache/orch"
tools="${ORCH_TOOLS_DIR:-$cache/tools}"
export CARGO_TARGET_DIR="${ORCH_FUZZ_TARGET_DIR:-$cache/fuzz-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
artifacts="$cache/fuzz-artifacts"

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly' || ! cargo +nightly --version >/dev/null 2>&1; then
  echo "skipping fuzz: nightly toolchain not installed"
  exit 0
fi

if [ ! -x "$tools/bin/cargo-fuzz" ]; then
  echo "installing cargo-fuzz into $tools (once)"
  cargo install cargo-fuzz --locked --root "$tools" --quiet
fi
export PATH="$tools/bin:$PATH"

work="$(mktemp -d "${TMPDIR:-/tmp}/orch-fuzz.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# --- seed corpus -------------------------------------------------------------------------------
for t in "${targets[@]}"; do mkdir -p "$work/corpus/$t" "$artifacts/$t"; done
head -c 131072 /dev/zero >"$work/corpus/decode_blob/zero-blob"
head -c 131072 /dev/urandom >"$work/corpus/decode_blob/random-blob"
head -c 4096 /dev/urandom >"$work/corpus/decode_blob/random-small"
printf '\0' >"$work/corpus/decompress/empty"
head -c 1025 /dev/urandom >"$work/corpus/decompress/random"
printf '{}' >"$work/corpus/parse_inputs/empty-object"
printf '0x1 2, 0x3\n' >"$work/corpus/parse_inputs/felt-list"

vectors="$root/../shared/vectors"
if [ -d "$vectors" ] && command -v python3 >/dev/null 2>&1; then
  # Read-only use of the shared vectors: converted/copied into the temp corpus only.
  python3 - "$vectors" "$work/corpus" <<'PY'
import os, sys
vec, out = sys.argv[1], sys.argv[2]
def felt_bytes(path):
    vals = [int(t, 0) for t in open(path).read().replace(",", " ").split()]
    return b"".join(v.to_bytes(32, "big") for v in vals if v < 2**256)
def write(target, name, data):
    with open(os.path.join(out, target, name), "wb") as f:
        f.write(data)
for sub in ("da_felts", "blob_felts"):
    d = os.path.join(vec, "derived", sub)
    for n in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        b = felt_bytes(os.path.join(d, n))
        write("decode_blob", f"{sub}-{n}", b[: 4096 * 32])
        write("decompress", f"{sub}-{n}", b"\0" + b)
        write("decompress", f"{sub}-{n}-corrupt", b"\x05" + b)
d = os.path.join(vec, "da", "test_blob")
for n in sorted(os.listdir(d)) if os.path.isdir(d) else []:
    text = open(os.path.join(d, n)).read().strip()
    try:
        write("decode_blob", f"blob-{n}", bytes.fromhex(text[2:] if text.startswith("0x") else text))
    except ValueError:
        pass
# Text inputs, small ones only (big seeds slow every mutation), plus one hex blob.
for sub in ("da/state_update", "da/nonces", "derived/da_felts"):
    d = os.path.join(vec, sub)
    for n in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        p = os.path.join(d, n)
        if os.path.getsize(p) <= 64 * 1024:
            write("parse_inputs", f"{sub.replace('/', '-')}-{n}", open(p, "rb").read())
p = os.path.join(vec, "da", "test_blob", "178.hex")
if os.path.exists(p):
    write("parse_inputs", "blob-178.hex", open(p, "rb").read())
PY
fi

# --- build and run ----------------------------------------------------------------------------
cd crates/orch-blob
echo "==> building fuzz targets (target dir $CARGO_TARGET_DIR)"
cargo +nightly fuzz build --sanitizer "$sanitizer"

failed=()
for t in "${targets[@]}"; do
  echo "==> fuzz $t (${seconds}s)"
  log="$work/$t.log"
  if cargo +nightly fuzz run --sanitizer "$sanitizer" "$t" "$work/corpus/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=30 \
    -artifact_prefix="$artifacts/$t/" -print_final_stats=1 >"$log" 2>&1; then
    grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" || tail -n 3 "$log"
  else
    failed+=("$t")
    echo "!! $t crashed:"
    grep -E 'panicked at|ERROR: |SUMMARY' "$log" | head -n 20 || true
    grep -A2 -E '^thread .* panicked' "$log" | head -n 10 || true
    input="$(grep -oE 'Test unit written to [^ ]+' "$log" | head -n 1 | sed 's/^Test unit written to //')"
    echo "!! crash input: ${input:-see log}"
    cp "$log" "$artifacts/$t/last-crash.log"
    echo "!! full log: $artifacts/$t/last-crash.log"
    echo "!! reproduce: cd crates/orch-blob && CARGO_TARGET_DIR=$CARGO_TARGET_DIR cargo +nightly fuzz run --sanitizer $sanitizer $t ${input:-<input>}"
  fi
done

if [ "${#failed[@]}" -ne 0 ]; then
  echo "fuzz: crashes in: ${failed[*]}"
  exit 1
fi
echo "fuzz: no crashes (${#targets[@]} targets x ${seconds}s)"
