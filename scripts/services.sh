#!/usr/bin/env bash
# Installs and starts the services the adapter tests talk to, all on 127.0.0.1, idempotently:
# a service whose port already answers is left alone; the rest are installed (Debian packages,
# or PyPI into a venv cached outside the clone) and started in the background with their PID
# recorded under $ORCH_SERVICES_DIR. Exports the ORCH_TEST_* URLs the tests read.
#
# Sourced by scripts/test.sh; also runnable on its own (`scripts/services.sh`), which prints
# the exports. Stop what it started with `scripts/services.sh stop` (by recorded PID only).
set -euo pipefail

ORCH_CACHE="${ORCH_CACHE:-$HOME/.cache/orch}"
ORCH_SERVICES_DIR="${ORCH_SERVICES_DIR:-$ORCH_CACHE/services}"
ORCH_VENV="${ORCH_VENV:-$ORCH_CACHE/venv}"
mkdir -p "$ORCH_SERVICES_DIR"

svc_log() { printf '    [services] %s\n' "$*" >&2; }

# True when something accepts TCP connections on 127.0.0.1:$1.
svc_listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Waits up to $2 seconds (default 60) for port $1; fails naming the service ($3).
svc_wait() {
  local port=$1 secs=${2:-60} name=${3:-service}
  for _ in $(seq 1 $((secs * 4))); do
    svc_listening "$port" && return 0
    sleep 0.25
  done
  svc_log "$name did not start listening on 127.0.0.1:$port within ${secs}s (log: $ORCH_SERVICES_DIR/$name.log)"
  return 1
}

svc_apt_updated=""
svc_apt() {
  if [ -z "$svc_apt_updated" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    svc_apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Starts a command in the background, recording its PID as $ORCH_SERVICES_DIR/$1.pid.
svc_spawn() {
  local name=$1
  shift
  nohup "$@" >"$ORCH_SERVICES_DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$ORCH_SERVICES_DIR/$name.pid"
}

svc_venv() {
  if [ ! -x "$ORCH_VENV/bin/pip" ]; then
    python3 -m venv "$ORCH_VENV"
    "$ORCH_VENV/bin/pip" install -q --upgrade pip >/dev/null
  fi
}

svc_postgres() {
  if ! svc_listening 5432; then
    command -v pg_ctlcluster >/dev/null || svc_apt postgresql
    local v
    v=$(ls /etc/postgresql | sort -V | tail -1)
    pg_ctlcluster --skip-systemctl-redirect "$v" main start
    svc_wait 5432 60 postgres
  fi
  export ORCH_TEST_POSTGRES_URL="${ORCH_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
}

svc_redis() {
  if ! svc_listening 6379; then
    command -v redis-server >/dev/null || svc_apt redis-server
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
      --logfile "$ORCH_SERVICES_DIR/redis.log" --pidfile "$ORCH_SERVICES_DIR/redis.pid"
    svc_wait 6379 30 redis
  fi
  export ORCH_TEST_REDIS_URL="${ORCH_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
}

svc_rabbit() {
  if ! svc_listening 5672; then
    command -v rabbitmq-server >/dev/null || svc_apt rabbitmq-server
    rabbitmq-server -detached
    rabbitmqctl await_startup >/dev/null 2>&1 || true
    svc_wait 5672 90 rabbitmq
  fi
  export ORCH_TEST_AMQP_URL="${ORCH_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
}

# SQS and S3 on moto (in memory).
svc_moto() {
  if ! svc_listening 5000; then
    svc_venv
    [ -x "$ORCH_VENV/bin/moto_server" ] || "$ORCH_VENV/bin/pip" install -q 'moto[server]==5.2.5' >/dev/null
    svc_spawn moto "$ORCH_VENV/bin/moto_server" -H 127.0.0.1 -p 5000
    svc_wait 5000 60 moto
  fi
  export ORCH_TEST_AWS_ENDPOINT="${ORCH_TEST_AWS_ENDPOINT:-http://127.0.0.1:5000}"
}

# The MongoDB wire protocol on SecantusDB (no real mongod installs here).
svc_mongo() {
  if ! svc_listening 27017; then
    svc_venv
    [ -x "$ORCH_VENV/bin/secantusd-py" ] || "$ORCH_VENV/bin/pip" install -q 'SecantusDB==0.7.0b3' >/dev/null
    svc_spawn mongo "$ORCH_VENV/bin/secantusd-py" --host 127.0.0.1 --port 27017 --storage-path :memory: --cache-size 256M
    svc_wait 27017 60 mongo
  fi
  export ORCH_TEST_MONGO_URL="${ORCH_TEST_MONGO_URL:-mongodb://127.0.0.1:27017/?directConnection=true}"
}

# The Kafka API on tansu (in memory). It does not auto-create topics: the adapter's `setup`
# creates them. Also installs what rdkafka needs to build its bundled librdkafka (this script
# runs before any cargo build in scripts/test.sh): cmake, and curl's headers (librdkafka 2.12
# includes <curl/curl.h> even when built without curl; SASL, zstd and protoc are not needed). The tansu binary is built once into
# the cache (about 9 minutes on 2 cores); ORCH_TEST_TANSU_BIN lets tests start private brokers.
svc_kafka() {
  command -v cmake >/dev/null || svc_apt cmake
  [ -n "$(ls /usr/include/curl/curl.h /usr/include/*/curl/curl.h 2>/dev/null)" ] || svc_apt libcurl4-openssl-dev
  local root="$ORCH_CACHE/tools/tansu"
  local tansu="$root/bin/tansu"
  if ! svc_listening 9092; then
    if [ ! -x "$tansu" ]; then
      svc_log "building tansu 0.6.0 into $root (once; about 9 minutes on 2 cores)"
      cargo install tansu --version 0.6.0 --locked --features dynostore --quiet \
        --root "$root" --target-dir "$ORCH_CACHE/tansu-build" >&2
    fi
    svc_spawn kafka "$tansu" broker --listener-url tcp://127.0.0.1:9092 \
      --advertised-listener-url tcp://127.0.0.1:9092 --storage-engine memory://tansu/
    svc_wait 9092 60 kafka
  fi
  export ORCH_TEST_KAFKA_BROKERS="${ORCH_TEST_KAFKA_BROKERS:-127.0.0.1:9092}"
  if [ -x "$tansu" ]; then
    export ORCH_TEST_TANSU_BIN="${ORCH_TEST_TANSU_BIN:-$tansu}"
  fi
}

# An Ethereum dev node with EIP-4844 blobs: anvil from npm, whose default hardfork has the Osaka
# rules (EIP-7594 cell proofs). solc from npm comes along for scripts/build-contracts.sh. Both go
# into a cache outside the clone; ORCH_TEST_ANVIL_BIN lets tests start private nodes (e.g. with
# `--hardfork prague` for EIP-4844 blob proofs), ORCH_TEST_SOLCJS names the compiler.
ORCH_ANVIL_VERSION=1.7.1
ORCH_SOLC_VERSION=0.8.30
svc_anvil() {
  local npm_dir="$ORCH_CACHE/tools/npm"
  local anvil="$npm_dir/node_modules/.bin/anvil" solcjs="$npm_dir/node_modules/.bin/solcjs"
  if [ ! -x "$anvil" ] || [ ! -x "$solcjs" ]; then
    command -v npm >/dev/null || svc_apt npm
    command -v curl >/dev/null || svc_apt curl
    mkdir -p "$npm_dir"
    npm install --prefix "$npm_dir" --save-exact --no-audit --no-fund --silent \
      "@foundry-rs/anvil-linux-amd64@$ORCH_ANVIL_VERSION" "solc@$ORCH_SOLC_VERSION" >&2
  fi
  if ! svc_listening 8545; then
    svc_spawn anvil "$anvil" --host 127.0.0.1 --port 8545
    svc_wait 8545 30 anvil
  fi
  # Listening is not answering: wait for the JSON-RPC to serve a request.
  local ok=""
  for _ in $(seq 1 120); do
    if curl -sf -m 2 -H 'content-type: application/json' \
      -d '{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}' http://127.0.0.1:8545 \
      | grep -q '"result"'; then
      ok=1
      break
    fi
    sleep 0.25
  done
  if [ -z "$ok" ]; then
    svc_log "anvil on 127.0.0.1:8545 does not answer eth_chainId (log: $ORCH_SERVICES_DIR/anvil.log)"
    return 1
  fi
  export ORCH_TEST_ANVIL_URL="${ORCH_TEST_ANVIL_URL:-http://127.0.0.1:8545}"
  export ORCH_TEST_ANVIL_BIN="${ORCH_TEST_ANVIL_BIN:-$anvil}"
  export ORCH_TEST_SOLCJS="${ORCH_TEST_SOLCJS:-$solcjs}"
}

svc_stop() {
  local f pid
  for f in "$ORCH_SERVICES_DIR"/*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null && svc_log "stopped $(basename "$f" .pid) (pid $pid)"
    rm -f "$f"
  done
}

if [ "${1:-}" = "stop" ]; then
  svc_stop
else
  svc_postgres
  svc_redis
  svc_rabbit
  svc_moto
  svc_mongo
  svc_kafka
  svc_anvil
  svc_log "postgres, redis, rabbitmq, moto (sqs+s3), mongo (secantus), kafka (tansu), anvil ready"
  if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    env | grep -E '^ORCH_(TEST_|ANVIL_BIN|SOLCJS)' | sed 's/^/export /'
  fi
fi
