#!/usr/bin/env bash
# Independent Python clients against a running `wxauth dev` (PyPI packages,
# pinned, in target/python-venv):
# - schemathesis, every check, a bounded number of examples per operation
#   (scripts/schemathesis/schemathesis.toml);
# - PyJWT verifying access tokens with the JWKS URL alone
#   (examples/python-verify/verify_jwks.py).
# scripts/test.sh runs it; it needs the debug binary.
#
#   bash scripts/python-clients.sh            # extra arguments go to schemathesis
set -euo pipefail
cd "$(dirname "$0")/.."

version=4.32.5
pyjwt=2.10.1
target="${CARGO_TARGET_DIR:-target}"
venv="$target/python-venv"
if ! "$venv/bin/st" --version 2>/dev/null | grep -q "$version" ||
  ! "$venv/bin/python" -c "import jwt, cryptography; assert jwt.__version__ == '$pyjwt'" 2>/dev/null; then
  echo "python-clients: installing schemathesis==$version and pyjwt[crypto]==$pyjwt into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$version" "pyjwt[crypto]==$pyjwt"
fi

bin="${WXAUTH_TEST_BIN:-$target/debug/wxauth}"
data="$(mktemp -d)"
log="$data/wxauth-dev.log"
# Schemathesis sends thousands of codes WeChat refuses on purpose, and
# requests without a service key; the per-address penalties for those
# (tested in the Rust suite) would then turn its later requests into 429s;
# so would the per-user limit on data requests.
# A service key with every scope, so schemathesis reaches the logic of
# /v1/introspect and of the admin API too.
WXAUTH_TEST_SERVICE_KEY="schemathesis-service-key-$(date +%s%N)"
export WXAUTH_TEST_SERVICE_KEY
cat >"$data/dev.toml" <<TOML
[[service_keys]]
id = "schemathesis"
key_env = "WXAUTH_TEST_SERVICE_KEY"
scopes = ["introspect", "users:read", "users:write", "sessions:revoke", "data:read", "data:write", "audit:read", "files:read", "files:write", "messages:send"]
TOML
WXAUTH_LIMITS__LOGIN_FAILURES_PER_IP_PER_MINUTE=1000000 \
WXAUTH_LIMITS__SERVICE_KEY_FAILURES_PER_IP_PER_MINUTE=1000000 \
WXAUTH_LIMITS__DATA_REQUESTS_PER_USER_PER_MINUTE=1000000 \
  "$bin" dev --config "$data/dev.toml" --listen 127.0.0.1:0 --sim-listen 127.0.0.1:0 --data-dir "$data/dev" >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do
  grep -q '^  simulator ' "$log" && break
  kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.1
done
WXAUTH_API_URL="$(sed -nE 's/^  API +(http[^ ]+).*/\1/p' "$log")"
WXAUTH_SIM_URL="$(sed -nE 's/^  simulator +(http[^ ]+).*/\1/p' "$log")"
[ -n "$WXAUTH_API_URL" ] && [ -n "$WXAUTH_SIM_URL" ] || { echo "python-clients: wxauth dev printed no URLs" >&2; cat "$log" >&2; exit 1; }
export WXAUTH_API_URL WXAUTH_SIM_URL

"$venv/bin/python" examples/python-verify/verify_jwks.py "$WXAUTH_API_URL" "$WXAUTH_SIM_URL"

cd scripts/schemathesis
# The hooks log every test case in with a fresh session (hooks.py).
SCHEMATHESIS_HOOKS=hooks PYTHONPATH=. "../../$venv/bin/st" --config-file schemathesis.toml \
  run "$WXAUTH_API_URL/openapi.json" --checks all --no-color "$@"
