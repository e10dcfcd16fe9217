#!/usr/bin/env bash
# Compiles orch-eth's Solidity (the Starknet core contract stand-in the tests deploy on anvil)
# with solcjs --standard-json into the committed artefact next to the source: its ABI and
# creation bytecode. The artefact is committed so a build needs no compiler; `--check`
# recompiles and fails unless the result equals the committed artefact byte for byte.
#
# solc comes from npm (pinned below) into a cache outside the clone, the same one
# scripts/services.sh installs into; ORCH_TEST_SOLCJS points at another solcjs.
set -euo pipefail
cd "$(dirname "$0")/.."

SOLC_VERSION=0.8.30
EVM_VERSION=cancun # blobhash and the point evaluation precompile (0x0a)
npm_dir="${ORCH_NPM_DIR:-${ORCH_CACHE:-$HOME/.cache/orch}/tools/npm}"
solcjs="${ORCH_TEST_SOLCJS:-$npm_dir/node_modules/.bin/solcjs}"
if [ ! -x "$solcjs" ]; then
  mkdir -p "$npm_dir"
  npm install --prefix "$npm_dir" --no-audit --no-fund --silent "solc@$SOLC_VERSION" >&2
fi
have=$("$solcjs" --version)
case "$have" in
  "$SOLC_VERSION"+*) ;;
  *) echo "solcjs at $solcjs is $have, not $SOLC_VERSION" >&2; exit 1 ;;
esac

check=""
[ "${1:-}" = "--check" ] && check=1

# name: path of the source, relative to the repo root.
contracts=(StarknetCoreStandIn:adapters/orch-eth/contracts/StarknetCoreStandIn.sol)

status=0
for entry in "${contracts[@]}"; do
  name=${entry%%:*}
  src=${entry#*:}
  out=${src%.sol}.json
  input=$(NAME="$name" SRC="$src" EVM="$EVM_VERSION" node -e '
    const fs = require("fs");
    const src = process.env.SRC;
    process.stdout.write(JSON.stringify({
      language: "Solidity",
      sources: { [src.split("/").pop()]: { content: fs.readFileSync(src, "utf8") } },
      settings: {
        evmVersion: process.env.EVM,
        optimizer: { enabled: true, runs: 200 },
        outputSelection: { "*": { [process.env.NAME]: ["abi", "evm.bytecode.object"] } },
      },
    }));
  ')
  fresh=$(mktemp)
  trap 'rm -f "$fresh"' EXIT
  printf '%s' "$input" | "$solcjs" --standard-json | NAME="$name" SRC="$src" SOLC="$have" EVM="$EVM_VERSION" node -e '
    let raw = "";
    process.stdin.on("data", (d) => (raw += d)).on("end", () => {
      // solcjs may print warnings before the JSON document.
      const out = JSON.parse(raw.slice(raw.indexOf("{")));
      const errors = (out.errors || []).filter((e) => e.severity === "error");
      for (const e of out.errors || []) process.stderr.write(e.formattedMessage || e.message);
      if (errors.length) process.exit(1);
      const file = process.env.SRC.split("/").pop();
      const c = out.contracts[file][process.env.NAME];
      const artefact = {
        contractName: process.env.NAME,
        source: process.env.SRC,
        compiler: "solc " + process.env.SOLC,
        evmVersion: process.env.EVM,
        optimizer: { enabled: true, runs: 200 },
        abi: c.abi,
        bytecode: "0x" + c.evm.bytecode.object,
      };
      process.stdout.write(JSON.stringify(artefact, null, 2) + "\n");
    });
  ' >"$fresh"
  if [ -n "$check" ]; then
    if cmp -s "$fresh" "$out"; then
      echo "$out: reproduced by solc $SOLC_VERSION"
    else
      echo "$out differs from what solc $SOLC_VERSION compiles from $src: run scripts/build-contracts.sh" >&2
      status=1
    fi
  else
    cp "$fresh" "$out"
    echo "wrote $out"
  fi
  rm -f "$fresh"
done
exit $status
