#!/usr/bin/env bash
# Benchmarks wxauth on this machine. Every figure is printed beside /healthz
# of the same server in the same run, so read them as ratios.
#
#   bash bench/run.sh                 # SQLite, then PostgreSQL if reachable
#   SECONDS_PER=20 CONNECTIONS=64 bash bench/run.sh
#   SCENARIOS="healthz create" bash bench/run.sh
#
# Needs nothing but cargo (and PostgreSQL at WXAUTH_BENCH_POSTGRES_URL,
# default postgres://postgres@127.0.0.1:5432/test, for the second half).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER="${SECONDS_PER:-10}"
CONNECTIONS="${CONNECTIONS:-64}"
SCENARIOS="${SCENARIOS:-healthz login me create get}"
PG_URL="${WXAUTH_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"

cargo build --release -q -p wxauth -p wxauth-loadgen
BIN=target/release/wxauth
LOAD=target/release/wxauth-loadgen
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

SIM_PORT=$(free_port)
"$BIN" sim --listen "127.0.0.1:$SIM_PORT" --app wx1111111111111111:11111111111111111111111111111111 --accept-any-code >/dev/null 2>&1 &
PIDS+=($!)

run_backend() {
  local name=$1 db_url=$2
  local port; port=$(free_port)
  cat > "$WORK/$name.toml" <<TOML
listen = "127.0.0.1:$port"
database_url = "$db_url"
[wechat]
base_url = "http://127.0.0.1:$SIM_PORT"
[[apps]]
appid = "wx1111111111111111"
secret = "11111111111111111111111111111111"
[tokens]
signing_keys = [{ id = "b1", key = "$(head -c 32 /dev/urandom | base64)" }]
[encryption]
keys = [{ id = "1", key = "$(head -c 32 /dev/urandom | base64)" }]
[limits]
documents_per_collection = 100000000
login_per_ip_per_minute = 100000000
login_per_app_per_second = 100000000
login_in_flight_per_ip = 100000   # the load generator is one address with many connections
TOML
  WXAUTH_LOG=warn "$BIN" serve --config "$WORK/$name.toml" >/dev/null 2>"$WORK/$name.log" &
  local pid=$!
  PIDS+=($pid)
  for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
  echo "== $name ($CONNECTIONS connections, ${SECONDS_PER}s each)"
  metric() { curl -s "http://127.0.0.1:$port/metrics" | awk -v m="$1" '$1 == m {print $2}' | tail -1; }
  for scenario in $SCENARIOS; do
    local c0 w0; c0=$(metric wxauth_store_commits_total); w0=$(metric wxauth_store_writes_total)
    "$LOAD" --scenario "$scenario" --url "http://127.0.0.1:$port" --connections "$CONNECTIONS" --seconds "$SECONDS_PER"
    if [ "$scenario" = login ] || [ "$scenario" = create ]; then
      local c1 w1; c1=$(metric wxauth_store_commits_total); w1=$(metric wxauth_store_writes_total)
      python3 -c "c=${c1:-0}-${c0:-0}; w=${w1:-0}-${w0:-0}; print(f'                 group commit: {w:.0f} writes in {c:.0f} commits = {w/max(c,1):.1f} writes per fsync')"
    fi
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

echo "== machine: $(nproc) cores; disk under $WORK:"
"$LOAD" --scenario fsync --dir "$WORK" --seconds 3
run_backend sqlite "sqlite://$WORK/bench.db"
if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  schema="bench_$$"
  psql "$PG_URL" -qc "CREATE SCHEMA $schema" >/dev/null
  run_backend postgres "$PG_URL?options=-c%20search_path%3D$schema"
  psql "$PG_URL" -qc "DROP SCHEMA $schema CASCADE" >/dev/null
else
  echo "== postgres: not reachable, skipped"
fi
