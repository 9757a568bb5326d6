#!/usr/bin/env bash
# Fuzz smoke: each cargo-fuzz target under fuzz/ for a bounded time
# (FUZZ_SECONDS each, default 10), from the committed seeds. scripts/test.sh
# runs it; needs the nightly toolchain and cargo-fuzz (installed here when
# missing).
#
# A crash stops the run and leaves the input under fuzz/artifacts/<target>/.
# Keep it: copy it to fuzz/regressions/<target>/ (cargo test replays every
# file there: crates/wxauth/tests/it/fuzz_regressions.rs), then fix.
#
#   bash scripts/fuzz.sh                  # all targets
#   FUZZ_SECONDS=300 bash scripts/fuzz.sh json_bodies
#   FUZZ_BUILD_ONLY=1 bash scripts/fuzz.sh  # build the targets (scripts/test.sh does, in the background)
#
# The targets build in target/fuzz (their own folder: the sanitizer flags
# make every artifact differ from the test build's anyway, and a folder of
# their own lets the build run beside `cargo test`'s without waiting on its
# lock), unoptimised (see below), and without AddressSanitizer (`-s none`): wxauth forbids unsafe code and
# the C and assembly of its dependencies (ring, SQLite) are not built with
# the sanitizer anyway, so what the smoke looks for is panics, hangs and
# memory growth, which libFuzzer reports without ASan; instrumenting every
# crate for it made the fuzz build the longest step of CI (about 13
# minutes beside the tests).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-10}"
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: installing the nightly toolchain"
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked --version 0.13.2
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
fi
# The workspace's release profile has fat LTO (for the shipped binary);
# with the sanitizer passes cargo-fuzz adds, LTO leaves the coverage
# symbols undefined at link time, so fuzz builds go without it.
export CARGO_PROFILE_RELEASE_LTO=false
# Unoptimised, in parallel codegen units: the smoke runs each target for
# seconds, where the build's CPU time is what a CI run pays (at opt-level 1
# with the release profile's single codegen unit it was CI's longest step).
export CARGO_PROFILE_RELEASE_OPT_LEVEL=0
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/target/fuzz}"
built=$SECONDS
cargo +nightly fuzz build --fuzz-dir fuzz -O -s none
echo "fuzz: targets built in $((SECONDS - built)) s"
if [ -n "${FUZZ_BUILD_ONLY:-}" ]; then
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for t in "${targets[@]}"; do
  # A scratch corpus seeded from the committed seeds and past crashes, so
  # the run leaves the tree as it was.
  mkdir -p "$work/$t"
  cp fuzz/seeds/"$t"/* fuzz/regressions/"$t"/* "$work/$t"/ 2>/dev/null || true
  echo "fuzz: $t for ${seconds}s"
  if ! cargo +nightly fuzz run --fuzz-dir fuzz -O -s none "$t" "$work/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
    >"$work/$t.log" 2>&1; then
    tail -40 "$work/$t.log" >&2
    if ls fuzz/artifacts/"$t"/* >/dev/null 2>&1; then
      echo "fuzz: $t found a crash: keep fuzz/artifacts/$t/* in fuzz/regressions/$t/" >&2
    else
      echo "fuzz: $t did not run (build or setup failed; see above)" >&2
    fi
    exit 1
  fi
  grep -E '^(Done|stat::peak_rss_mb)' "$work/$t.log" || true
done
echo "fuzz: ${#targets[@]} targets ran ${seconds}s each, no crash"
