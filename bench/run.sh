#!/usr/bin/env bash
# Benchmarks wxauth on this machine. Every figure is printed beside /healthz
# of the same server in the same run, so read them as ratios.
#
#   bash bench/run.sh                 # side by side, SQLite, PostgreSQL, 1 and 3 instances, gateway
#   CONNECTIONS=32 bash bench/run.sh  # the connections of the README's table
#   SECONDS_PER=20 CONNECTIONS=64 bash bench/run.sh
#   SCENARIOS="healthz create" bash bench/run.sh
#   ONLY=peers bash bench/run.sh      # nginx static and the seed pattern beside wxauth
#   PEER_ROUNDS=3 ONLY=peers bash bench/run.sh   # the same three times, interleaved, with median ratios
#   ONLY=soak SOAK_SECONDS=600 bash bench/run.sh   # unique-code logins for 10 minutes
#   ONLY=gateway bash bench/run.sh    # a service directly and through the gateway
#   ONLY=million bash bench/run.sh    # empty vs 1,000,000 users / 10,000,000 documents
#   BACKENDS=sqlite ONLY=million bash bench/run.sh   # one backend only
#   ONLY=query bash bench/run.sh      # indexed queries on 1,000,000 shared documents, filtered lists of 10,000
#   ONLY=hardening bash bench/run.sh  # exports, one address holding idle connections, a flood of expensive queries
#   PEER_ROUNDS=3 ONLY=files bash bench/run.sh   # a 100 KiB image beside nginx, 200 KiB uploads beside express+multer, RSS of 32 × 10 MiB uploads
#   ONLY=import bash bench/run.sh     # `wxauth import leancloud` of a 1,000,000-row export: time, rows/s, peak RSS, SQLite and PostgreSQL
#   IMPORT_ROWS=100000 ONLY=import bash bench/run.sh   # a smaller export
#   ONLY=content_check bash bench/run.sh   # creates into a collection with check_text (msgSecCheck on the simulator) vs without
#   ONLY=realtime bash bench/run.sh   # 10,000 watching sockets (RSS), write-to-change latency on 1 and 3 instances, fan-out to 1,000 watchers
#
# Needs nothing but cargo (and PostgreSQL at WXAUTH_BENCH_POSTGRES_URL,
# default postgres://postgres@127.0.0.1:5432/test, for the second half).
# With redis-server and nginx on PATH it also runs one instance with Redis
# and then three instances behind nginx (round robin) on the same
# PostgreSQL and Redis, in the same run: compare those two blocks. With
# nginx it also measures the gateway: a minimal service (nginx answering
# 200 "ok") called directly, and through a wxauth [[gateway]] entry.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER="${SECONDS_PER:-10}"
CONNECTIONS="${CONNECTIONS:-64}"
SCENARIOS="${SCENARIOS:-healthz login me create get}"
PG_URL="${WXAUTH_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"

cargo build --release -q -p wxauth -p wxauth-loadgen
BIN=${BENCH_WXAUTH_BIN:-target/release/wxauth}   # another build to compare (not WXAUTH_…: wxauth reads those as settings)
LOAD=target/release/wxauth-loadgen
# Settings an older build (BENCH_WXAUTH_BIN) may not know, which it would refuse.
NEW_LIMITS=""
if grep -qa data_requests_per_user_per_minute "$BIN"; then
  NEW_LIMITS="data_requests_per_user_per_minute = 100000000   # one user per connection, thousands of requests a second"
fi
FILES_SECTION=""
if grep -qa orphan_grace_secs "$BIN"; then
  FILES_SECTION="[files]
bytes_per_user = 1000000000000   # one user per connection uploading for seconds"
fi
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# new_schema NAME, drop_schema NAME: a PostgreSQL schema per run; pg_url NAME: a URL using it.
new_schema() { psql "$PG_URL" -qc "CREATE SCHEMA $1" >/dev/null; }
drop_schema() { psql "$PG_URL" -qc "SET client_min_messages = warning; DROP SCHEMA $1 CASCADE" >/dev/null; }
pg_url() { echo "$PG_URL?options=-c%20search_path%3D$1"; }

# write_config NAME PORT DB_URL [REDIS_URL]
write_config() {
  local name=$1 port=$2 db_url=$3 redis_url=${4:-} redis_line=""
  if [ -n "$redis_url" ]; then redis_line="redis_url = \"$redis_url\""; fi
  local files_lines=""
  if [ -n "$FILES_SECTION" ]; then files_lines="$FILES_SECTION
url = \"file://$WORK/files-$name\""; fi
  cat > "$WORK/$name.toml" <<TOML
listen = "127.0.0.1:$port"
database_url = "$db_url"
$redis_line
[wechat]
base_url = "http://127.0.0.1:$SIM_PORT"
[[apps]]
appid = "wx1111111111111111"
secret = "11111111111111111111111111111111"
[tokens]
signing_keys = [{ id = "b1", key = "$SIGN_KEY" }]
[encryption]
keys = [{ id = "1", key = "$ENC_KEY" }]
[limits]
documents_per_collection = 100000000
login_per_ip_per_minute = 100000000
login_per_app_per_second = 100000000
login_in_flight_per_ip = 100000   # the load generator is one address with many connections
$NEW_LIMITS
$files_lines
TOML
}
SIGN_KEY=$(head -c 32 /dev/urandom | base64)
ENC_KEY=$(head -c 32 /dev/urandom | base64)

# start_instance NAME PORT: serves $WORK/NAME.toml, waits until healthy.
start_instance() {
  local name=$1 port=$2
  WXAUTH_LOG=warn "$BIN" serve --config "$WORK/$name.toml" >/dev/null 2>"$WORK/$name.log" &
  PIDS+=($!)
  for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
}

# run_scenarios LABEL URL METRICS_URL...
run_scenarios() {
  local label=$1 url=$2; shift 2
  echo "== $label ($CONNECTIONS connections, ${SECONDS_PER}s each)"
  metric() { local sum=0 m=$1; for u in "${METRICS[@]}"; do
    v=$(curl -s "$u/metrics" | awk -v m="$m" '$1 == m {print $2}' | tail -1); sum=$(python3 -c "print(${sum} + ${v:-0})"); done; echo "$sum"; }
  METRICS=("$@")
  for scenario in $SCENARIOS; do
    local c0 w0; c0=$(metric wxauth_store_commits_total); w0=$(metric wxauth_store_writes_total)
    "$LOAD" --scenario "$scenario" --url "$url" --connections "$CONNECTIONS" --seconds "$SECONDS_PER"
    if [ "$scenario" = login ] || [ "$scenario" = create ]; then
      local c1 w1; c1=$(metric wxauth_store_commits_total); w1=$(metric wxauth_store_writes_total)
      python3 -c "c=${c1:-0}-${c0:-0}; w=${w1:-0}-${w0:-0}; print(f'                 group commit: {w:.0f} writes in {c:.0f} commits = {w/max(c,1):.1f} writes per fsync')"
    fi
  done
}

# run_backend NAME DB_URL [REDIS_URL [LABEL]]
run_backend() {
  local name=$1 db_url=$2 redis_url=${3:-} label=${4:-$1}
  local port; port=$(free_port)
  write_config "$name" "$port" "$db_url" "$redis_url"
  start_instance "$name" "$port"
  run_scenarios "$label" "http://127.0.0.1:$port" "http://127.0.0.1:$port"
  kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true
}

# start_nginx DIR HTTP_BODY: nginx with its files under DIR, the given
# http { } contents, in the foreground of a background job; sets NGINX_PID.
start_nginx() {
  local dir=$1 body=$2
  mkdir -p "$dir"
  cat > "$dir/nginx.conf" <<NGINX
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/body; proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi; uwsgi_temp_path $dir/uwsgi; scgi_temp_path $dir/scgi;
$body
}
NGINX
  nginx -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' &
  NGINX_PID=$!
  PIDS+=($NGINX_PID)
}

# Three instances on one PostgreSQL schema and one Redis, behind nginx.
run_cluster() {
  local db_url=$1 redis_url=$2
  local ports=() urls=() upstreams=""
  for i in 1 2 3; do
    local port; port=$(free_port)
    write_config "node$i" "$port" "$db_url" "$redis_url"
    start_instance "node$i" "$port"
    ports+=("$port"); urls+=("http://127.0.0.1:$port"); upstreams+="    server 127.0.0.1:$port;"$'\n'
  done
  local lb; lb=$(free_port)
  start_nginx "$WORK/nginx" "  upstream wxauth {
$upstreams    keepalive 64;
  }
  server {
    listen 127.0.0.1:$lb;
    location / {
      proxy_pass http://wxauth;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
  }"
  local nginx_pid=$NGINX_PID
  for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$lb/healthz" >/dev/null && break; sleep 0.1; done
  run_scenarios "postgres+redis, 3 instances behind nginx" "http://127.0.0.1:$lb" "${urls[@]}"
  kill -TERM "$nginx_pid"; wait "$nginx_pid" 2>/dev/null || true
}

# The gateway's cost: a minimal upstream (nginx, 200 "ok") directly, then
# through wxauth's [[gateway]] (token checked, identity headers added).
run_gateway() {
  local up lbdir="$WORK/upstream" port
  up=$(free_port); port=$(free_port)
  start_nginx "$lbdir" "  server { listen 127.0.0.1:$up; keepalive_requests 100000; location / { return 200 \"ok\"; } }"
  local nginx_pid=$NGINX_PID
  write_config gateway "$port" "sqlite://$WORK/gateway.db"
  cat >> "$WORK/gateway.toml" <<TOML
[[gateway]]
prefix = "/api/"
upstream = "http://127.0.0.1:$up"
TOML
  start_instance gateway "$port"
  echo "== gateway ($CONNECTIONS connections, ${SECONDS_PER}s each)"
  "$LOAD" --scenario plain --url "http://127.0.0.1:$up" --path /api/ping --label "service direct" --connections "$CONNECTIONS" --seconds "$SECONDS_PER"
  "$LOAD" --scenario gateway --url "http://127.0.0.1:$port" --path /api/ping --label "via gateway" --connections "$CONNECTIONS" --seconds "$SECONDS_PER"
  "$LOAD" --scenario healthz --url "http://127.0.0.1:$port" --label "wxauth healthz" --connections "$CONNECTIONS" --seconds "$SECONDS_PER"
  kill "${PIDS[-1]}" 2>/dev/null || true
  kill -TERM "$nginx_pid"; wait "$nginx_pid" 2>/dev/null || true
}

# Side by side with what users would otherwise run: a static file from
# nginx (the HTTP limit here) and the seed pattern (bench/peers/seed-express:
# Node express + request, no storage, trusting the client's openid), both
# calling the same simulator; then wxauth on SQLite and on PostgreSQL.
# PEER_ROUNDS=N (default 1) runs the nine lines N times, interleaved, and
# prints the issue's ratios for each round and their median: on a shared
# 2-core machine one run moves by 10% or more.
run_peers() {
  local static port peer pg_port="" schema="bench_peers_$$" rounds=${PEER_ROUNDS:-1}
  static=$(free_port); peer=$(free_port); port=$(free_port)
  mkdir -p "$WORK/static"
  printf 'ok\n' > "$WORK/static/ping.txt"
  chmod 755 "$WORK" "$WORK/static"; chmod 644 "$WORK/static/ping.txt"   # nginx workers run as nobody
  start_nginx "$WORK/static" "  server { listen 127.0.0.1:$static; keepalive_requests 100000; root $WORK/static; }"
  local nginx_pid=$NGINX_PID
  (cd bench/peers/seed-express && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  WECHAT="http://127.0.0.1:$SIM_PORT" APPID=wx1111111111111111 SECRET=11111111111111111111111111111111 PORT=$peer \
    node bench/peers/seed-express/server.js >/dev/null &
  PIDS+=($!)
  local seed_pid=$!
  write_config peers "$port" "sqlite://$WORK/peers.db"
  start_instance peers "$port"
  local sqlite_pid=${PIDS[-1]} pg_pid=""
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    pg_port=$(free_port)
    new_schema "$schema"
    write_config peers_pg "$pg_port" "$(pg_url "$schema")"
    start_instance peers_pg "$pg_port"
    pg_pid=${PIDS[-1]}
  fi
  for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$peer/api/data" -X POST -H 'content-type: application/json' -d '{"openid":"warm"}' >/dev/null && break; sleep 0.1; done
  echo "== side by side ($CONNECTIONS connections, ${SECONDS_PER}s each)"
  local round lines="$WORK/peers.lines"
  : > "$lines"
  for round in $(seq 1 "$rounds"); do
    [ "$rounds" -gt 1 ] && echo "-- round $round of $rounds"
    # side LABEL SCENARIO PORT [ARGS...]: one line of the block.
    side() { "$LOAD" --label "$1" --scenario "$2" --url "http://127.0.0.1:$3" "${@:4}" --connections "$CONNECTIONS" --seconds "$SECONDS_PER"; }
    {
      side "nginx static" plain "$static" --path /ping.txt
      side "seed login" peer-login "$peer"
      side "seed write(mem)" peer-write "$peer"
      for scenario in login create me; do side "wxauth $scenario" "$scenario" "$port"; done
      if [ -n "$pg_port" ]; then
        for scenario in login create me; do side "wxauth pg $scenario" "$scenario" "$pg_port"; done
      fi
    } | while IFS= read -r line; do echo "$line"; echo "$round $line" >> "$lines"; done
  done
  python3 - "$lines" <<'PY'
import re, statistics, sys
rounds = {}
for line in open(sys.argv[1]):
    m = re.match(r"(\d+) (.+?)\s+(\d+) req/s .*?p99\s+([\d.]+) ms", line)
    if m:
        rounds.setdefault(int(m[1]), {})[m[2]] = (int(m[3]), float(m[4]))
def ratio(r, a, b):
    return r[a][0] / r[b][0] if a in r and b in r and r[b][0] else None
targets = [
    ("login / seed login", lambda r: ratio(r, "wxauth login", "seed login"), ">= 3"),
    ("login p99 (ms)", lambda r: r["wxauth login"][1] if "wxauth login" in r else None, "<= 10"),
    ("create / seed write", lambda r: ratio(r, "wxauth create", "seed write(mem)"), ">= 2"),
    ("GET /v1/me / nginx static", lambda r: ratio(r, "wxauth me", "nginx static"), ">= 0.4"),
    ("PostgreSQL / SQLite login", lambda r: ratio(r, "wxauth pg login", "wxauth login"), ">= 0.6"),
    ("PostgreSQL / SQLite create", lambda r: ratio(r, "wxauth pg create", "wxauth create"), ">= 0.6"),
    ("PostgreSQL / SQLite me", lambda r: ratio(r, "wxauth pg me", "wxauth me"), ">= 0.6"),
]
print(f"== issue 10's targets, each round's ratio{' and the median' if len(rounds) > 1 else ''}")
for name, f, target in targets:
    values = [v for v in (f(rounds[k]) for k in sorted(rounds)) if v is not None]
    if not values:
        continue
    shown = "  ".join(f"{v:6.2f}" for v in values)
    median = f"  median {statistics.median(values):6.2f}" if len(values) > 1 else ""
    print(f"{name:28} {shown}{median}  (target {target})")
PY
  kill "$sqlite_pid" "$seed_pid" 2>/dev/null || true
  wait "$sqlite_pid" 2>/dev/null || true
  if [ -n "$pg_pid" ]; then
    kill "$pg_pid"; wait "$pg_pid" 2>/dev/null || true
    drop_schema "$schema"
  fi
  kill -TERM "$nginx_pid"; wait "$nginx_pid" 2>/dev/null || true
}

# Files beside what users would otherwise run: a 100 KiB public image
# from wxauth and the same file from nginx's disk; 200 KiB uploads to
# wxauth and to the tutorial's express + multer (bench/peers/upload-express,
# writing to disk, no session, no type check); then the peak memory of a
# fresh instance taking 32 uploads of 10 MiB at once (streamed: it must
# stay far below 32 × 10 MiB). PEER_ROUNDS=N interleaves the four lines N
# times and prints the median ratios.
run_files() {
  local static port peer rounds=${PEER_ROUNDS:-1} token url path lines="$WORK/files.lines"
  static=$(free_port); peer=$(free_port); port=$(free_port)
  mkdir -p "$WORK/images" "$WORK/multer"
  python3 -c 'import os, sys; sys.stdout.buffer.write(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + os.urandom(100 * 1024 - 16))' > "$WORK/images/avatar.png"
  chmod 755 "$WORK" "$WORK/images"; chmod 644 "$WORK/images/avatar.png"   # nginx workers run as nobody
  start_nginx "$WORK/images" "  server { listen 127.0.0.1:$static; keepalive_requests 100000; root $WORK/images; }"
  local nginx_pid=$NGINX_PID
  write_config files "$port" "sqlite://$WORK/files.db"
  start_instance files "$port"
  local files_pid=${PIDS[-1]}
  token=$(curl -sf -X POST "http://127.0.0.1:$port/v1/login" -H 'content-type: application/json' -d '{"code":"bench-files"}' |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
  url=$(curl -sf -H "Authorization: Bearer $token" -F purpose=avatar -F "file=@$WORK/images/avatar.png;filename=tmp_avatar.png" \
    "http://127.0.0.1:$port/v1/files" | python3 -c 'import json, sys; print(json.load(sys.stdin)["url"])')
  path="/${url#*://*/}"
  (cd bench/peers/upload-express && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  UPLOADS="$WORK/multer" PORT=$peer node bench/peers/upload-express/server.js >/dev/null &
  PIDS+=($!)
  local multer_pid=$!
  for _ in $(seq 1 50); do curl -s "http://127.0.0.1:$peer/upload" -X POST >/dev/null && break; sleep 0.1; done
  echo "== files ($CONNECTIONS connections, ${SECONDS_PER}s each; the image is $path)"
  : > "$lines"
  for round in $(seq 1 "$rounds"); do
    [ "$rounds" -gt 1 ] && echo "-- round $round of $rounds"
    side() { "$LOAD" --label "$1" --scenario "$2" --url "http://127.0.0.1:$3" "${@:4}" --connections "$CONNECTIONS" --seconds "$SECONDS_PER"; }
    {
      side "nginx image" plain "$static" --path /avatar.png
      side "wxauth image" plain "$port" --path "$path"
      side "multer upload" peer-upload "$peer"
      side "wxauth upload" upload "$port"
    } | while IFS= read -r line; do echo "$line"; echo "$round $line" >> "$lines"; done
  done
  python3 - "$lines" <<'PY'
import re, statistics, sys
rounds = {}
for line in open(sys.argv[1]):
    m = re.match(r"(\d+) (.+?)\s+(\d+) req/s", line)
    if m:
        rounds.setdefault(int(m[1]), {})[m[2]] = int(m[3])
def ratio(r, a, b):
    return r[a] / r[b] if a in r and b in r and r[b] else None
print(f"== issue 29's targets, each round's ratio{' and the median' if len(rounds) > 1 else ''}")
for name, a, b, target in [
    ("100 KiB image / nginx", "wxauth image", "nginx image", ">= 0.5"),
    ("200 KiB upload / multer", "wxauth upload", "multer upload", ">= 2"),
]:
    values = [v for v in (ratio(rounds[k], a, b) for k in sorted(rounds)) if v is not None]
    if values:
        median = f"  median {statistics.median(values):6.2f}" if len(values) > 1 else ""
        print(f"{name:28} {'  '.join(f'{v:6.2f}' for v in values)}{median}  (target {target})")
PY
  kill "$files_pid" "$multer_pid" 2>/dev/null || true
  wait "$files_pid" 2>/dev/null || true
  kill -TERM "$nginx_pid"; wait "$nginx_pid" 2>/dev/null || true
  # Peak memory: a fresh instance, 32 connections each uploading 10 MiB files.
  port=$(free_port)
  write_config rss "$port" "sqlite://$WORK/rss.db"
  start_instance rss "$port"
  local rss_pid=${PIDS[-1]} before
  before=$(awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$rss_pid/status")
  "$LOAD" --label "10 MiB uploads" --scenario upload --file-bytes 10485760 --url "http://127.0.0.1:$port" --connections 32 --seconds 5
  echo "peak RSS of wxauth: $before MB before, $(awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$rss_pid/status") MB after 32 concurrent 10 MiB uploads (target < 100 MB)"
  kill "$rss_pid" 2>/dev/null || true
  wait "$rss_pid" 2>/dev/null || true
}

# Login with a unique code for SOAK_SECONDS: the rate per 10 s and the
# server's memory, to see whether the cost stays flat as users pile up.
run_soak() {
  local port; port=$(free_port)
  write_config soak "$port" "sqlite://$WORK/soak.db"
  start_instance soak "$port"
  local pid=${PIDS[-1]} total=${SOAK_SECONDS:-600} t=0
  echo "== soak: logins with unique codes for ${total}s ($CONNECTIONS connections); rate per 10 s, RSS"
  while [ "$t" -lt "$total" ]; do
    "$LOAD" --scenario login --url "http://127.0.0.1:$port" --label "login t=${t}s" --connections "$CONNECTIONS" --seconds 10 | tr -d '\n'
    echo "  rss $(awk '/VmRSS/ {print $2/1024 " MB"}' /proc/$pid/status) peak $(awk '/VmHWM/ {print $2/1024 " MB"}' /proc/$pid/status)"
    t=$((t + 11))
  done
}

# The stand-in WeChat upstream every system here calls for jscode2session.
# With nginx: a fixed answer whose openid is the code (each fresh code a new
# user), so the upstream costs next to nothing and the figures are the
# systems' own. Without nginx: wxauth's simulator, which accepts any code.
SIM_PORT=$(free_port)
if command -v nginx >/dev/null; then
  start_nginx "$WORK/upstream-wechat" "  server {
    listen 127.0.0.1:$SIM_PORT; keepalive_requests 1000000;
    location = /sns/jscode2session {
      default_type application/json;
      return 200 '{\"openid\":\"o-\$arg_js_code\",\"session_key\":\"tiihtNczf5v6AKRyjwEUhQ==\"}';
    }
  }"
  UPSTREAM="nginx answering jscode2session"
else
  "$BIN" sim --listen "127.0.0.1:$SIM_PORT" --app wx1111111111111111:11111111111111111111111111111111 --accept-any-code >/dev/null 2>&1 &
  PIDS+=($!)
  UPSTREAM="wxauth sim --accept-any-code"
fi
for _ in $(seq 1 50); do curl -s "http://127.0.0.1:$SIM_PORT/sns/jscode2session?js_code=x" >/dev/null && break; sleep 0.1; done

# The same routes on an empty database and on one holding MILLION_USERS
# users (default 1,000,000), each with a session and DOCS_PER_USER
# documents (default 10): SQLite, then PostgreSQL if reachable. Prints each
# server's peak RSS. The fill is bench/fill/*.sql (minutes, not timed).
# A LeanCloud export of IMPORT_ROWS rows (a twentieth users, as many
# projects owned by pointers, the rest todos owned by ACLs and pointing at
# projects), imported into an empty database: wall time, rows per second
# and the importer's peak RSS (GNU time), on SQLite and on PostgreSQL.
run_import() {
  local rows=${IMPORT_ROWS:-1000000}
  local users=$((rows / 20))
  local todos=$((rows - 2 * users))
  local export="$WORK/export"
  mkdir -p "$export"
  python3 - "$export" "$users" "$todos" <<'PY'
import sys
out, users, todos = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(f"{out}/_User.jsonl", "w") as f:
    for i in range(users):
        f.write('{"objectId":"u%023d","username":"n%d","nickName":"用户%d","avatarUrl":"https://thirdwx.qlogo.cn/mmopen/%d/132","authData":{"lc_weapp":{"openid":"oBench%022d","session_key":"x"}},"createdAt":"2023-01-01T00:00:00.000Z","updatedAt":"2023-01-02T00:00:00.000Z"}\n' % (i, i, i, i, i))
with open(f"{out}/Project.jsonl", "w") as f:
    for i in range(users):
        f.write('{"objectId":"p%023d","name":"project %d","color":"#ff8800","owner":{"__type":"Pointer","className":"_User","objectId":"u%023d"},"ACL":{"*":{"read":true},"u%023d":{"read":true,"write":true}},"createdAt":"2023-02-01T00:00:00.000Z","updatedAt":"2023-02-01T00:00:00.000Z"}\n' % (i, i, i, i))
with open(f"{out}/Todo.jsonl", "w") as f:
    for i in range(todos):
        o = i % users
        f.write('{"objectId":"t%023d","content":"todo number %d, with some text in it","done":%s,"priority":%d,"tags":["a","b"],"project":{"__type":"Pointer","className":"Project","objectId":"p%023d"},"due":{"__type":"Date","iso":"2023-07-01T00:00:00.000Z"},"ACL":{"u%023d":{"read":true,"write":true}},"createdAt":"2023-03-01T00:00:00.000Z","updatedAt":"2023-03-02T00:00:00.000Z"}\n' % (i, i, "true" if i % 2 else "false", i % 5, o, o))
PY
  echo "== import: a LeanCloud export of $rows rows ($users users, $users projects, $todos todos; $(du -sh "$export" | cut -f1))"
  local backends=(sqlite)
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then backends+=(postgres); fi
  if [ -n "${BACKENDS:-}" ]; then read -r -a backends <<< "$BACKENDS"; fi
  for backend in "${backends[@]}"; do
    local schema="" db_url name="import_$backend"
    if [ "$backend" = sqlite ]; then
      db_url="sqlite://$WORK/$name.db"
    else
      schema="bench_import_$$"
      new_schema "$schema"
      db_url="$(pg_url "$schema")"
    fi
    write_config "$name" "$(free_port)" "$db_url"
    WXAUTH_LOG=warn "$BIN" migrate --config "$WORK/$name.toml" >/dev/null
    /usr/bin/time -f "%e %M" -o "$WORK/$name.time" \
      "$BIN" import leancloud --config "$WORK/$name.toml" --appid wx1111111111111111 --json \
      "$export/Todo.jsonl" "$export/Project.jsonl" "$export/_User.jsonl" >"$WORK/$name.json" 2>/dev/null
    python3 - "$backend" "$rows" "$WORK/$name.time" "$WORK/$name.json" <<'PY'
import json, sys
backend, rows, timing, report = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
seconds, rss_kb = open(timing).read().split()[-2:]
seconds = float(seconds)
r = json.load(open(report))
stored = sum(c["stored"] for c in r["collections"]) + r["users"]["created"]
print(f"  {backend:9} {seconds:6.1f} s  {rows / seconds:8.0f} rows/s  peak RSS {int(rss_kb) / 1024:5.1f} MB  "
      f"({stored} stored, {r['problems_total']} problems; targets: < 120 s, < 100 MB)")
PY
    if [ -n "$schema" ]; then drop_schema "$schema"; fi
  done
}

# Realtime watches (GET /v1/watch), through real sockets: sockets held by
# one instance and its RSS, latency from a write's 2xx to its change, and
# one write fanned out to 1,000 watchers of a shared collection; then the
# same across three instances on PostgreSQL and Redis.
run_realtime() {
  cargo build --release -q -p wxauth-bench-realtime
  local rt=target/release/wxauth-bench-realtime
  local sockets=${REALTIME_SOCKETS:-10000}
  realtime_config() {
    cat >> "$WORK/$1.toml" <<TOML
[realtime]
sockets_per_user = 1000000     # the bench is one user on one address
sockets_per_address = 1000000
[[collections]]
name = "board"
access = "public_read"
TOML
  }
  echo "== realtime, SQLite, one instance"
  local port; port=$(free_port)
  write_config rt "$port" "sqlite://$WORK/rt.db"
  realtime_config rt
  start_instance rt "$port"
  local pid=${PIDS[-1]} url="http://127.0.0.1:$port"
  "$rt" --mode sockets --url "$url" --count "$sockets" --pid "$pid" --label "$sockets sockets (target: < 200 MB)"
  "$rt" --mode latency --url "$url" --rounds 500 --label "latency, 1 instance (target p99 < 50 ms)"
  "$rt" --mode fanout --url "$url" --count 1000 --collection board --rounds 50 --label "fan-out to 1,000 (target < 200 ms)"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && command -v redis-server >/dev/null; then
    echo "== realtime, 3 instances on PostgreSQL and Redis"
    local redis_port; redis_port=$(free_port)
    redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no >/dev/null &
    PIDS+=($!)
    sleep 0.3
    local schema="bench_rt_$$" urls=() pids=()
    new_schema "$schema"
    for i in 1 2 3; do
      local p; p=$(free_port)
      write_config "rt$i" "$p" "$(pg_url "$schema")" "redis://127.0.0.1:$redis_port"
      realtime_config "rt$i"
      start_instance "rt$i" "$p"
      urls+=("http://127.0.0.1:$p"); pids+=("${PIDS[-1]}")
    done
    "$rt" --mode latency --url "${urls[2]}" --write-url "${urls[0]}" --rounds 500 \
      --label "latency, written on instance 1, watched on 3 (target p99 < 100 ms)"
    "$rt" --mode fanout --url "$(IFS=,; echo "${urls[*]}")" --write-url "${urls[0]}" --count 1000 \
      --collection board --rounds 50 --label "fan-out to 1,000 over 3 instances"
    for p in "${pids[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done
    drop_schema "$schema"
  else
    echo "== realtime, 3 instances: PostgreSQL or redis-server not available, skipped"
  fi
}

# The price of realtime for everyone else: login and create on a fresh
# instance with no socket open, then with 1,000 watches open on the
# collection the creates go to (each change read by its tail and checked
# against every watch). Compare builds with BENCH_WXAUTH_BIN.
run_realtime_price() {
  cargo build --release -q -p wxauth-bench-realtime
  local rt=target/release/wxauth-bench-realtime
  local backends=(sqlite)
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then backends+=(postgres); fi
  for backend in "${backends[@]}"; do
    local port db_url schema="" name="price_$backend"; port=$(free_port)
    if [ "$backend" = sqlite ]; then db_url="sqlite://$WORK/$name.db"; else
      schema="bench_price_$$"; new_schema "$schema"; db_url="$(pg_url "$schema")"; fi
    write_config "$name" "$port" "$db_url"
    local watches=no
    if grep -qa history_secs "$BIN"; then   # a build with realtime
      watches=yes
      cat >> "$WORK/$name.toml" <<TOML
[realtime]
sockets_per_user = 1000000
sockets_per_address = 1000000
TOML
    fi
    start_instance "$name" "$port"
    local pid=${PIDS[-1]} url="http://127.0.0.1:$port"
    SCENARIOS="login create" run_scenarios "$backend, no socket open ($BIN)" "$url" "$url"
    if [ "$watches" = yes ]; then
      "$rt" --mode sockets --url "$url" --count 1000 --collection bench --hold $((SECONDS_PER * 2 + 20)) \
        --label "1,000 watches of bench" &
      local holder=$!
      sleep 8
      SCENARIOS="login create" run_scenarios "$backend, 1,000 watches open ($BIN)" "$url" "$url"
      kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null || true
    fi
    kill "$pid"; wait "$pid" 2>/dev/null || true
    if [ -n "$schema" ]; then drop_schema "$schema"; fi
  done
}

# Content security (issue 32): creates into `bench` with check_text =
# ["name"] (one msgSecCheck per create, answered by the simulator on this
# machine) against the same without it, SQLite, ROUNDS (default 3) rounds
# interleaved. The simulator also answers logins (--accept-any-code).
run_content_check() {
  local sim_port saved=$SIM_PORT; sim_port=$(free_port)
  "$BIN" sim --listen "127.0.0.1:$sim_port" --app wx1111111111111111:11111111111111111111111111111111 \
    --accept-any-code >/dev/null 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$sim_port/sim/v1/health" >/dev/null && break; sleep 0.1; done
  SIM_PORT=$sim_port
  for round in $(seq 1 "${ROUNDS:-3}"); do
    for variant in without with; do
      local port name="cc_${variant}_$round"; port=$(free_port)
      write_config "$name" "$port" "sqlite://$WORK/$name.db"
      if [ "$variant" = with ]; then
        cat >> "$WORK/$name.toml" <<TOML
[[collections]]
name = "bench"
check_text = ["name"]
TOML
      fi
      start_instance "$name" "$port"
      local pid=${PIDS[-1]} url="http://127.0.0.1:$port"
      SCENARIOS="create" run_scenarios "round $round, $variant check_text" "$url" "$url"
      echo "   msgSecCheck calls so far: $(curl -s "http://127.0.0.1:$sim_port/sim/v1/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["calls"].get("msg_sec_check", 0))')"
      kill "$pid"; wait "$pid" 2>/dev/null || true
    done
  done
  SIM_PORT=$saved
}

run_million() {
  local users=${MILLION_USERS:-1000000} docs=${DOCS_PER_USER:-10}
  echo "== empty vs $users users and $((users * docs)) documents ($CONNECTIONS connections, ${SECONDS_PER}s each)"
  local backends=(sqlite)
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then backends+=(postgres); fi
  if [ -n "${BACKENDS:-}" ]; then read -r -a backends <<< "$BACKENDS"; fi
  for backend in "${backends[@]}"; do
    for state in empty filled; do
      local port db_url schema="" name="m_${backend}_$state"; port=$(free_port)
      if [ "$backend" = sqlite ]; then
        db_url="sqlite://$WORK/$name.db"
      else
        schema="bench_${state}_$$"
        new_schema "$schema"
        db_url="$(pg_url "$schema")"
      fi
      write_config "$name" "$port" "$db_url"
      WXAUTH_LOG=warn "$BIN" migrate --config "$WORK/$name.toml" >/dev/null
      if [ "$state" = filled ]; then
        local started=$SECONDS
        if [ "$backend" = sqlite ]; then
          python3 - "$WORK/$name.db" bench/fill/sqlite.sql "$users" "$docs" <<'PY'
import sqlite3, sys
db, script, users, docs = sys.argv[1:]
sql = open(script).read().replace("@USERS@", users).replace("@DOCS@", docs)
sqlite3.connect(db, isolation_level=None).executescript(sql)
PY
        else
          sed -e "s/@USERS@/$users/g" -e "s/@DOCS@/$docs/g" bench/fill/postgres.sql |
            PGOPTIONS="-c search_path=$schema -c client_min_messages=warning" psql "$PG_URL" -q -v ON_ERROR_STOP=1 >/dev/null
        fi
        echo "   ($backend filled in $((SECONDS - started)) s)"
        # Settle: the fill's dirty pages and WAL are written out now, not
        # during the measurement that follows (they made every fsync wait).
        if [ "$backend" = postgres ]; then psql "$PG_URL" -qc "CHECKPOINT" >/dev/null; fi
        sync; sleep 5
      fi
      start_instance "$name" "$port"
      local pid=${PIDS[-1]}
      for scenario in login me create list; do
        "$LOAD" --scenario "$scenario" --url "http://127.0.0.1:$port" --label "$backend $state $scenario" --connections "$CONNECTIONS" --seconds "$SECONDS_PER"
      done
      echo "   $backend $state: peak RSS $(awk '/VmHWM/ {printf "%.1f MB", $2/1024}' /proc/$pid/status)"
      kill "$pid"; wait "$pid" 2>/dev/null || true
      if [ -n "$schema" ]; then drop_schema "$schema"; fi
      rm -f "$WORK/$name.db"*
    done
  done
}

# Queries (issue 12): an indexed query on a shared collection of
# QUERY_SHARED (1,000,000) documents, and filtered lists of one user's
# QUERY_TODOS (10,000) documents, beside GET /v1/me on the same server.
run_query() {
  local users=${QUERY_USERS:-10000} shared=${QUERY_SHARED:-1000000} todos=${QUERY_TODOS:-10000}
  echo "== queries: $shared shared documents ($users owners), one user's $todos documents ($CONNECTIONS connections, ${SECONDS_PER}s each)"
  local backends=(sqlite)
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then backends+=(postgres); fi
  for backend in "${backends[@]}"; do
    local port db_url schema="" name="q_$backend"; port=$(free_port)
    if [ "$backend" = sqlite ]; then
      db_url="sqlite://$WORK/$name.db"
    else
      schema="bench_query_$$"
      new_schema "$schema"
      db_url="$(pg_url "$schema")"
    fi
    write_config "$name" "$port" "$db_url"
    cat >> "$WORK/$name.toml" <<'TOML'
[[collections]]
name = "posts"
access = "public_read"
indexes = ["status", "-score"]
TOML
    WXAUTH_LOG=warn "$BIN" migrate --config "$WORK/$name.toml" >/dev/null
    local started=$SECONDS
    if [ "$backend" = sqlite ]; then
      python3 - "$WORK/$name.db" bench/fill/query-sqlite.sql "$users" "$shared" "$todos" <<'PY'
import sqlite3, sys
db, script, users, shared, todos = sys.argv[1:]
sql = open(script).read().replace("@USERS@", users).replace("@SHARED@", shared).replace("@TODOS@", todos)
sqlite3.connect(db, isolation_level=None).executescript(sql)
PY
    else
      sed -e "s/@USERS@/$users/g" -e "s/@SHARED@/$shared/g" -e "s/@TODOS@/$todos/g" bench/fill/query-postgres.sql |
        PGOPTIONS="-c search_path=$schema -c client_min_messages=warning" psql "$PG_URL" -q -v ON_ERROR_STOP=1 >/dev/null
    fi
    echo "   ($backend filled and indexed in $((SECONDS - started)) s)"
    start_instance "$name" "$port"
    local pid=${PIDS[-1]} url="http://127.0.0.1:$port"
    "$LOAD" --scenario me --url "$url" --label "$backend GET /v1/me" --connections "$CONNECTIONS" --seconds "$SECONDS_PER"
    local label path
    while IFS='|' read -r label path; do
      "$LOAD" --scenario gateway --path "$path" --login-code fill-1 --url "$url" \
        --label "$backend $label" --connections "$CONNECTIONS" --seconds "$SECONDS_PER"
    done <<'QUERIES'
shared where status (indexed)|/v1/data/posts?where=%7B%22status%22%3A%22s7%22%7D&limit=20
shared order_by -score (indexed)|/v1/data/posts?order_by=-score&limit=20
shared status + score range|/v1/data/posts?where=%7B%22status%22%3A%22s7%22%2C%22score%22%3A%7B%22%24gte%22%3A500%7D%7D&limit=20
own where done=false|/v1/data/todos?where=%7B%22done%22%3Afalse%7D&limit=20
own priority>=3 by -priority|/v1/data/todos?where=%7B%22priority%22%3A%7B%22%24gte%22%3A3%7D%7D&order_by=-priority&limit=20
own _count done=false|/v1/data/todos/_count?where=%7B%22done%22%3Afalse%7D
QUERIES
    echo "   $backend: peak RSS $(awk '/VmHWM/ {printf "%.1f MB", $2/1024}' /proc/$pid/status)"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    if [ -n "$schema" ]; then drop_schema "$schema"; fi
    rm -f "$WORK/$name.db"*
  done
}

# Issue 27's figures, each on a fresh SQLite instance (compare two builds
# with BENCH_WXAUTH_BIN=…; a build that does not know a setting gets none):
# - exports: four at once of a user holding EXPORT_DOCS (default 100,000)
#   documents, then one of a user holding EXPORT_MAX_DOCS (1,000,000):
#   status, bytes and seconds of each, peak RSS of the server;
# - idle connections: one address (127.0.0.2) opens IDLE_CONNECTIONS
#   (1,100) kept-alive connections and holds them silent while GET /v1/me
#   runs from another; once with the defaults, once with the per-address
#   cap at the server's size (so the server fills and idle ones make way);
# - query flood: 16 connections send the most expensive query allowed
#   (200 comparisons, four unindexed sort keys, over 10,000 documents)
#   while GET /v1/data/{collection}/{id} runs beside them.
# Each load line is printed beside the same line run alone.
run_hardening() {
  local new_settings=""
  if [ -n "$NEW_LIMITS" ]; then new_settings=yes; fi
  # hard_instance NAME [EXTRA_HTTP_LINE]: a fresh instance; sets URL, PORT, PID.
  hard_instance() {
    PORT=$(free_port)
    write_config "$1" "$PORT" "sqlite://$WORK/$1.db"
    if [ -n "$new_settings" ]; then
      sed -i 's/^\[limits\]$/[limits]\nexports_at_once = 4/' "$WORK/$1.toml"
      if [ -n "${2:-}" ]; then printf '[http]\n%s\n' "$2" >> "$WORK/$1.toml"; fi
    fi
    start_instance "$1" "$PORT"
    PID=${PIDS[-1]}
    URL="http://127.0.0.1:$PORT"
  }
  stop_instance() { kill "$PID"; wait "$PID" 2>/dev/null || true; rm -f "$WORK/$1.db"*; }
  peak() { awk '/VmHWM/ {printf "%.1f MB", $2/1024}' "/proc/$PID/status"; }
  reset_peak() { echo 5 > "/proc/$PID/clear_refs" 2>/dev/null || true; }
  # login CODE: prints "USER_ID TOKEN".
  login() {
    curl -s -X POST "$URL/v1/login" -H 'content-type: application/json' -d "{\"code\":\"$1\"}" |
      python3 -c 'import json,sys; b=json.load(sys.stdin); print(b["user"]["id"], b["access_token"])'
  }
  # fill DB USER_ID COLLECTIONS DOCS: DOCS documents over COLLECTIONS collections.
  fill() {
    python3 - "$@" <<'PY'
import sqlite3, sys
db, user, collections, docs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
c = sqlite3.connect(db, isolation_level=None, timeout=30)
c.execute("BEGIN IMMEDIATE")
c.executemany(
    "INSERT INTO documents (id, user_id, collection, data, version, created_at, updated_at, size, appid) "
    "VALUES (?, ?, ?, ?, 1, ?, ?, ?, 'wx1111111111111111')",
    ((f"{user[:24]}{i:012d}", user, f"c{i % collections}",
      f'{{"n":{i},"a":{i % 97},"b":{i % 89},"c":"x{i}","d":{i % 7},"e":"y{i % 13}","text":"some words of a note"}}',
      1000 + i, 1000 + i, 600) for i in range(docs)))
c.execute("COMMIT")
PY
  }
  export_once() {
    curl -s -o /dev/null -H "authorization: Bearer $1" -w '%{http_code} %{size_download} %{time_total}\n' "$URL/v1/me/export"
  }

  local docs=${EXPORT_DOCS:-100000} max_docs=${EXPORT_MAX_DOCS:-1000000}
  echo "== exports (SQLite; $BIN)"
  hard_instance exp
  read -r user token < <(login export-4)
  fill "$WORK/exp.db" "$user" 10 "$docs"
  echo "   RSS before: $(awk '/VmRSS/ {printf "%.1f MB", $2/1024}' /proc/$PID/status)"
  reset_peak
  local started=$SECONDS
  for _ in 1 2 3 4; do export_once "$token" > "$WORK/exp.out.$_" & done
  wait $(jobs -p | tail -4) 2>/dev/null || true
  for i in 1 2 3 4; do echo "   4 at once, $docs documents: status, bytes, seconds: $(cat "$WORK/exp.out.$i" 2>/dev/null)"; done
  echo "   4 at once: $((SECONDS - started)) s in all, peak RSS $(peak)"
  read -r user token < <(login export-max)
  fill "$WORK/exp.db" "$user" 100 "$max_docs"
  reset_peak
  echo "   1 of $max_docs documents: status, bytes, seconds: $(export_once "$token"), peak RSS $(peak)"
  stop_instance exp

  local holders=${IDLE_CONNECTIONS:-1100}
  for variant in defaults full; do
    local extra=""
    if [ "$variant" = full ]; then extra="max_connections_per_address = 1024"; fi
    echo "== one address holding idle connections ($variant; $BIN)"
    hard_instance "idle_$variant" "$extra"
    "$LOAD" --scenario me --url "$URL" --connections 16 --seconds "$SECONDS_PER" --label "me alone"
    python3 bench/hardening/hold_idle.py 127.0.0.2 127.0.0.1 "$PORT" "$holders" > "$WORK/hold.out" &
    local holder=$!
    for _ in $(seq 1 300); do [ -s "$WORK/hold.out" ] && break; sleep 0.1; done
    echo "   127.0.0.2 tried $holders: $(cat "$WORK/hold.out")"
    "$LOAD" --scenario me --url "$URL" --connections 16 --seconds "$SECONDS_PER" --label "me beside them" ||
      echo "me beside them: the load generator could not even log in (refused while they are held)"
    kill "$holder"; wait "$holder" 2>/dev/null || true
    stop_instance "idle_$variant"
  done

  echo "== query flood (SQLite; $BIN)"
  hard_instance flood
  read -r user token < <(login flood-1)
  fill "$WORK/flood.db" "$user" 1 10000
  local in_a in_b where path
  in_a=$(python3 -c 'print(",".join(str(i) for i in range(1000, 1100)))')
  in_b=$(python3 -c 'print(",".join(str(i) for i in range(2000, 2099)))')
  where=$(python3 -c "import urllib.parse; print(urllib.parse.quote('{\"\$or\":[{\"a\":{\"\$in\":[$in_a]}},{\"b\":{\"\$in\":[$in_b]}}]}'))")
  path="/v1/data/c0?where=$where&order_by=c,-b,d,-e&limit=100"
  "$LOAD" --scenario gateway --path "$path" --login-code flood-1 --url "$URL" --connections 1 --seconds 3 --label "one query alone"
  "$LOAD" --scenario get --url "$URL" --connections 16 --seconds "$SECONDS_PER" --label "get alone"
  "$LOAD" --scenario gateway --path "$path" --login-code flood-1 --url "$URL" --connections 16 \
    --seconds $((SECONDS_PER + 4)) --label "the flood" &
  local flood=$!
  sleep 2
  "$LOAD" --scenario get --url "$URL" --connections 16 --seconds "$SECONDS_PER" --label "get beside it" ||
    echo "get beside it: the load generator failed"
  wait "$flood" || true
  stop_instance flood
}

echo "== machine: $(nproc) cores; WeChat upstream: $UPSTREAM; disk under $WORK:"
"$LOAD" --scenario fsync --dir "$WORK" --seconds 3
case "${ONLY:-}" in
  gateway) run_gateway; exit 0 ;;
  peers) run_peers; exit 0 ;;
  files) run_files; exit 0 ;;
  soak) run_soak; exit 0 ;;
  million) run_million; exit 0 ;;
  query) run_query; exit 0 ;;
  hardening) run_hardening; exit 0 ;;
  import) run_import; exit 0 ;;
  realtime) run_realtime; exit 0 ;;
  realtime_price) run_realtime_price; exit 0 ;;
  content_check) run_content_check; exit 0 ;;
esac
run_peers
run_files
run_backend sqlite "sqlite://$WORK/bench.db"
if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  schema="bench_$$"
  new_schema "$schema"
  run_backend postgres "$(pg_url "$schema")"
  drop_schema "$schema"
  if command -v redis-server >/dev/null && command -v nginx >/dev/null; then
    REDIS_PORT=$(free_port)
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no >/dev/null &
    PIDS+=($!)
    sleep 0.3
    schema="bench_one_$$"
    new_schema "$schema"
    run_backend one "$(pg_url "$schema")" "redis://127.0.0.1:$REDIS_PORT" "postgres+redis, 1 instance"
    drop_schema "$schema"
    redis-cli -p "$REDIS_PORT" flushall >/dev/null
    schema="bench_three_$$"
    new_schema "$schema"
    run_cluster "$(pg_url "$schema")" "redis://127.0.0.1:$REDIS_PORT"
    drop_schema "$schema"
  else
    echo "== postgres+redis, 1 and 3 instances: redis-server or nginx not on PATH, skipped"
  fi
else
  echo "== postgres: not reachable, skipped"
fi
if command -v nginx >/dev/null; then
  run_gateway
else
  echo "== gateway: nginx not on PATH, skipped"
fi
