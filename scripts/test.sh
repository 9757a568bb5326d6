#!/usr/bin/env bash
# The whole test suite: the Rust workspace, then the JavaScript client, the
# example mini program and the playground (in Chromium) against a real
# `wxauth dev`, schemathesis against `wxauth dev`, and the fuzz smoke.
# README's test command; .ci/run runs it too.
#
# PostgreSQL tests run when WXAUTH_TEST_POSTGRES_URL is set (.ci/run sets
# it); the browser test runs when Chromium is at /usr/bin/chromium (this
# script installs it, with a CJK font, when run as root, as on CI).
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step says how long it took (CI's budget is kept by these lines).
step_start=$SECONDS
took() { echo "test: $1 took $((SECONDS - step_start)) s"; step_start=$SECONDS; }

# The file tests' S3 server (tests/it/s3.rs); without it they say they skipped.
if ! command -v s3s-fs >/dev/null 2>&1; then
  echo "test: installing s3s-fs (the S3-compatible server of the file tests, about 1 min)"
  cargo install s3s-fs@0.14.1 --features binary --locked --debug -q
  took "installing s3s-fs"
fi
# The fuzz smoke (each cargo-fuzz target 10 s, nightly; kept crashes are
# replayed by cargo test) runs in the background from the start: its build
# (a target folder of its own, one codegen unit: long single-threaded
# tails) fills the core the tests' build leaves idle, and its runs (one
# core each) overlap the tests and the Python clients.
mkdir -p target
bash scripts/fuzz.sh >target/fuzz.log 2>&1 &
fuzz=$!
# (Stopped if a step fails first; each command || true: under set -e a
# failing command in the trap would become the script's exit status.)
trap 'pkill -TERM -P "$fuzz" 2>/dev/null || true; kill "$fuzz" 2>/dev/null || true' EXIT
cargo test --workspace --locked
cargo build --locked -q -p wxauth # the binary schemathesis and the JavaScript tests start
took "cargo test"

# Python clients against the running service (PyPI, pinned, into
# target/python-venv): schemathesis (every check, bounded examples) holds
# the server to its OpenAPI document; PyJWT verifies tokens with the JWKS.
bash scripts/python-clients.sh
took "python clients (schemathesis, PyJWT)"

wait "$fuzz" || { cat target/fuzz.log >&2; echo "test: the fuzz smoke failed" >&2; exit 1; }
trap - EXIT
grep -E '^fuzz: ' target/fuzz.log
took "the rest of the fuzz smoke"

if [ ! -x /usr/bin/chromium ] || ! fc-list 2>/dev/null | grep -qi 'wenquanyi\|noto sans cjk'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test: installing Chromium and a CJK font for the browser test"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends chromium fonts-wqy-zenhei >/dev/null ||
      { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends chromium fonts-wqy-zenhei >/dev/null; }
  fi
fi

(cd examples/express-service && npm ci --no-audit --no-fund --loglevel=error && npm test)
took "express example"

cd clients/miniprogram
npm ci --no-audit --no-fund --loglevel=error
npm test
cd ../..
took "mini-program client and playground"
