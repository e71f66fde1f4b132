#!/usr/bin/env bash
# Fuzzes txbridge with cargo-fuzz (libFuzzer, nightly) for a bounded time per target.
#
#   bash fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]   # default: 60 s each; form jws config handler
#
# Installs cargo-fuzz if missing (pinned, quiet) into ${TXBRIDGE_TOOLS:-~/.cache/txbridge}/bin-root,
# builds into target/fuzz (not shared with the stable build), runs each target single-process and
# niced with the checked-in seeds (fuzz/seeds/<target>) plus the local corpus (fuzz/corpus/<target>,
# not committed), writes target/fuzz-summary.txt and prints it. Exits 1 when any target crashed,
# timed out or ran out of memory (the input is in fuzz/artifacts/<target>/). Without a nightly
# toolchain or a C++ compiler (libFuzzer is C++) it prints a SKIPPED line and exits 0.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECS="${1:-60}"
shift || true
TARGETS=("$@")
[ "${#TARGETS[@]}" -gt 0 ] || TARGETS=(form jws config handler)
TOOLS="${TXBRIDGE_TOOLS:-$HOME/.cache/txbridge}/bin-root"
CARGO_FUZZ_VERSION="0.13.2"
TARGET_DIR="$ROOT/target/fuzz"
BIN="$TARGET_DIR/x86_64-unknown-linux-gnu/release"
SUMMARY="$ROOT/target/fuzz-summary.txt"
# ASan adds little over safe Rust (core and signer forbid unsafe) and halves throughput.
SANITIZER="${FUZZ_SANITIZER:-none}"

log() { echo "fuzz: $*" >&2; }

if ! command -v rustup >/dev/null || ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "fuzz: SKIPPED (no nightly toolchain; install one with: rustup toolchain install nightly)"
  exit 0
fi
if ! command -v c++ >/dev/null && ! command -v g++ >/dev/null && ! command -v clang++ >/dev/null; then
  echo "fuzz: SKIPPED (no C++ compiler for libFuzzer; install g++)"
  exit 0
fi
case "$(uname -m)-$(uname -s)" in
  x86_64-Linux) ;;
  *) echo "fuzz: SKIPPED (run.sh knows the x86_64 Linux layout only)"; exit 0 ;;
esac

if ! { [ -x "$TOOLS/bin/cargo-fuzz" ] &&
       "$TOOLS/bin/cargo-fuzz" --version 2>/dev/null | grep -qw -- "$CARGO_FUZZ_VERSION"; }; then
  log "cargo install cargo-fuzz $CARGO_FUZZ_VERSION (takes ~1 min)"
  mkdir -p "$TOOLS"
  if ! nice -n 15 cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked \
      --root "$TOOLS" --force >"$TOOLS/install-cargo-fuzz.log" 2>&1; then
    tail -30 "$TOOLS/install-cargo-fuzz.log" >&2
    log "cargo install cargo-fuzz failed; full log: $TOOLS/install-cargo-fuzz.log"
    exit 1
  fi
fi
export PATH="$TOOLS/bin:$PATH"

build_log="$ROOT/target/fuzz-build.log"
mkdir -p "$ROOT/target"
build_start=$(date +%s)
# No target names: one `cargo fuzz build` of all of them; else each named one.
build() {
  nice -n 10 cargo +nightly fuzz build --fuzz-dir fuzz --target-dir "$TARGET_DIR" \
    -s "$SANITIZER" "$@" >>"$build_log" 2>&1 || {
    tail -40 "$build_log" >&2
    log "build failed; full log: $build_log"
    exit 1
  }
}
: >"$build_log"
if [ "$#" = 0 ]; then build; else for t in "${TARGETS[@]}"; do build "$t"; done; fi
build_secs=$(( $(date +%s) - build_start ))

max_len() {
  case "$1" in
    form) echo 20000 ;;     # past MAX_JSON_PARAM (16 KiB)
    jws) echo 12000 ;;      # past MAX_TOKEN_LEN (8 KiB)
    config) echo 8192 ;;
    handler) echo 16384 ;;  # bodies past MAX_BODY come from `x-fuzz-pad`
    *) echo 4096 ;;
  esac
}

failed=0
{
  echo "fuzz summary ($(date -u +%FT%TZ)): ${SECS}s per target, sanitizer $SANITIZER, build ${build_secs}s"
} >"$SUMMARY"
for t in "${TARGETS[@]}"; do
  corpus="fuzz/corpus/$t" artifacts="fuzz/artifacts/$t" logf="$ROOT/target/fuzz-$t.log"
  mkdir -p "$corpus" "$artifacts"
  dict=()
  case "$t" in form | handler) dict=(-dict=fuzz/dicts/exchange.dict) ;; esac
  stamp="$(mktemp)"
  set +e
  nice -n 10 "$BIN/$t" "$corpus" "fuzz/seeds/$t" "${dict[@]}" \
    -max_total_time="$SECS" -max_len="$(max_len "$t")" -rss_limit_mb=1024 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" >"$logf" 2>&1
  rc=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logf" | tail -1)
  cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$logf" | tail -1)
  found=$(find "$artifacts" -type f -newer "$stamp" | sort | tr '\n' ' ')
  rm -f "$stamp"
  if [ "$rc" = 0 ] && [ -z "$found" ]; then
    outcome="ok"
  else
    outcome="FAILED (exit $rc) ${found:-see $logf}"
    failed=1
    grep -E -m5 'panicked at|^SUMMARY|ERROR: libFuzzer' "$logf" >&2 || true
  fi
  printf '%-8s %8s execs  %-20s corpus %4s  %s\n' "$t" "${execs:-?}" "${cov:-cov: ?}" \
    "$(find "$corpus" -type f | wc -l)" "$outcome" >>"$SUMMARY"
done
cat "$SUMMARY"
exit "$failed"
