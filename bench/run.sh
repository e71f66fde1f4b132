#!/usr/bin/env bash
# Regenerates BENCHMARKS.md: criterion benches of the core (crypto floor, warm exchanges,
# verification backends, in-process throughput) in both crypto configurations (rsa/p256, the
# Worker's; aws-lc-rs, the Lambda's), instruction counts under callgrind, the
# thundering-herd test, the Lambda's cold start and size, and the Worker's wasm size and warm
# timings and CPU under workerd (against a baseline build); then the sections other scripts own:
# 4b (bench/cold-start.sh: cold starts interleaved), 8 (bench/contract-v3.sh), 9 (bench/gate.sh).
# One command: `bash bench/run.sh` (about 25 min
# on 2 shared cores from a warm build: it also builds the baseline Worker, a Lambda with jitter entropy,
# the deployment zips and an unstripped binary for per-crate sizes).
#
# Knobs: BENCH_SECS (criterion measurement time per benchmark, default 3), BENCH_SKIP_ARCH_SIZES=1
# (no arm64/x86_64 size table: bench/sizes.sh), BENCH_SKIP_WORKER=1
# (no workerd section), BENCH_SKIP_CALLGRIND=1, BENCH_WORKER_BASELINE (a git revision whose Worker
# build is measured in the same run as the current one; default 4a98ac5, the last build that
# verified and signed with rsa/p256 inside wasm; empty: none).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
OUT="$ROOT/target/bench"
mkdir -p "$OUT"
BENCH_SECS="${BENCH_SECS:-3}"
log() { echo "bench/run.sh: $*" >&2; }

# --- machine -----------------------------------------------------------------------------------
python3 - "$OUT/machine.json" <<'EOF'
import json, os, subprocess, sys
cpu = "unknown"
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip(); break
json.dump({
    "nproc": os.cpu_count(),
    "cpu": cpu,
    "rustc": subprocess.run(["rustc", "-V"], capture_output=True, text=True).stdout.strip(),
    "loadavg_start": open("/proc/loadavg").read().split()[:3],
}, open(sys.argv[1], "w"))
EOF

# --- builds ------------------------------------------------------------------------------------
log "building: release txbridge-lambda and hello-lambda, the core benches (both backends), the shell bench"
cargo build -q --release -p txbridge-lambda -p hello-lambda
# The "before" of AWS_LC_SYS_NO_JITTER_ENTROPY (.cargo/config.toml): the same binary with aws-lc's
# CPU-jitter entropy source, in a target dir of its own.
AWS_LC_SYS_NO_JITTER_ENTROPY=0 CARGO_TARGET_DIR="$ROOT/target/bench-jitter" \
  cargo build -q --release -p txbridge-lambda --bin txbridge-lambda
export TXBRIDGE_BENCH_LAMBDA_JITTER_BIN="$ROOT/target/bench-jitter/release/txbridge-lambda"
# Deployment zips (cargo lambda build, x86_64) of txbridge and of the hello world.
CL_BIN=$(bash "$ROOT/.ci/lambda.sh" install)
PATH="$CL_BIN:$PATH" cargo lambda build -q --release --output-format zip -p txbridge-lambda -p hello-lambda \
  >"$OUT/lambda-zip.log" 2>&1 || { tail -20 "$OUT/lambda-zip.log" >&2; exit 1; }
# Both architectures' zips, with and without the KMS signers, and the hello world's, each built by
# functions/lambda/build.sh (bench/sizes.sh; the arm64 ones are cross builds with build-std).
# BENCH_SKIP_ARCH_SIZES=1 skips them (BENCHMARKS.md then says so).
if [ "${BENCH_SKIP_ARCH_SIZES:-}" != 1 ]; then
  rm -f "$OUT"/sizes-*.tsv "$OUT/sizes-arch.md"
  bash "$ROOT/bench/sizes.sh" >/dev/null
fi
# Per-crate .text sizes of the Lambda (cargo-bloat, when installed in the tools dir).
BLOAT="${TXBRIDGE_TOOLS:-$HOME/.cache/txbridge}/bin-root/bin"
if [ -x "$BLOAT/cargo-bloat" ]; then
  # Its own target dir: cargo-bloat builds unstripped.
  PATH="$BLOAT:$PATH" CARGO_TARGET_DIR="$ROOT/target/bench-bloat" cargo bloat -q --release \
    -p txbridge-lambda --bin txbridge-lambda --crates -n 20 --message-format json \
    >"$OUT/bloat.json" 2>/dev/null || rm -f "$OUT/bloat.json"
fi
cargo build -q -p txbridge-harness -p txbridge-lambda
# Prints the path of the core's `exchange` bench built with the given cargo arguments.
bench_bin() {
  cargo bench -q -p txbridge-core --bench exchange --no-run --message-format=json "$@" 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "exchange":
        print(m["executable"])'
}
# rsa/p256: what the Worker runs (measured natively), and the baseline of the backend comparison.
BENCH_BIN="$(bench_bin)"
# aws-lc-rs: what the Lambda ships (its default features turn these on).
BENCH_BIN_LC="$(bench_bin --features aws-lc,txbridge-signer/aws-lc)"
cargo bench -q -p txbridge-tests --bench shells --no-run 2>/dev/null

# --- criterion ---------------------------------------------------------------------------------
log "criterion (measurement ${BENCH_SECS}s per benchmark): rsa/p256 build, all groups"
rm -rf "$ROOT/target/criterion" "$ROOT/target/criterion-aws-lc"
CRITERION_HOME="$ROOT/target/criterion" "$BENCH_BIN" --bench --warm-up-time 1 \
  --measurement-time "$BENCH_SECS" --noplot \
  >"$OUT/criterion.log" 2>&1 || { tail -30 "$OUT/criterion.log" >&2; exit 1; }
log "criterion: aws-lc-rs build, floor and exchange"
CRITERION_HOME="$ROOT/target/criterion-aws-lc" "$BENCH_BIN_LC" --bench --warm-up-time 1 \
  --measurement-time "$BENCH_SECS" --noplot '^(floor|exchange)/' \
  >"$OUT/criterion-aws-lc.log" 2>&1 || { tail -30 "$OUT/criterion-aws-lc.log" >&2; exit 1; }

# --- callgrind: instructions of one warm exchange vs its crypto -------------------------------
: >"$OUT/callgrind.txt"
if [ "${BENCH_SKIP_CALLGRIND:-0}" != 1 ] && command -v valgrind >/dev/null; then
  # callgrind.<alg>.*: rsa/p256 build; callgrind.aws-lc.<alg>.*: aws-lc-rs build.
  for cfg in "" aws-lc.; do
    bin=$BENCH_BIN
    [ -z "$cfg" ] || bin=$BENCH_BIN_LC
    for id in rs256 es256; do
      log "callgrind exchange/$id ${cfg:-rsa-p256.}"
      CRITERION_HOME="$OUT/criterion-callgrind" valgrind --tool=callgrind \
        --callgrind-out-file="$OUT/callgrind.$cfg$id.out" --toggle-collect='*TxBridge*handle*' \
        "$bin" --bench --profile-time 1 "^exchange/$id\$" >"$OUT/callgrind.$cfg$id.log" 2>&1
      callgrind_annotate --inclusive=yes "$OUT/callgrind.$cfg$id.out" \
        >"$OUT/callgrind.$cfg$id.txt" 2>/dev/null
    done
  done
fi

# --- thundering herd (a real test; its figure is recorded) --------------------------------------
log "thundering herd test"
cargo test -q -p txbridge-tests --test thundering_herd -- --nocapture >"$OUT/herd.log" 2>&1 ||
  { tail -30 "$OUT/herd.log" >&2; exit 1; }

# --- the Worker baseline: an earlier revision's build, for CPU figures in the same run ----------
# Built from a detached worktree that shares this target dir (registry crates are reused) and
# node_modules; nothing is written into the repository.
BASELINE_REV="${BENCH_WORKER_BASELINE-4a98ac5}"
if [ "${BENCH_SKIP_WORKER:-0}" != 1 ] && [ -n "$BASELINE_REV" ]; then
  src="$OUT/baseline-src"
  if [ "$(git -C "$src" rev-parse HEAD 2>/dev/null)" != "$(git rev-parse "$BASELINE_REV^{commit}")" ]; then
    git worktree remove --force "$src" 2>/dev/null || rm -rf "$src"
    git worktree prune
    git worktree add -q --detach "$src" "$BASELINE_REV"
  fi
  ln -sfn "$ROOT/target" "$src/target"
  ln -sfn "$ROOT/functions/worker/node_modules" "$src/functions/worker/node_modules"
  log "building the baseline Worker ($BASELINE_REV)"
  bash "$src/functions/worker/build.sh" >"$OUT/baseline-build.log" 2>&1 ||
    { tail -30 "$OUT/baseline-build.log" >&2; exit 1; }
  export TXBRIDGE_BENCH_WORKER_BASELINE="$src/functions/worker/build"
  export TXBRIDGE_BENCH_WORKER_BASELINE_REV="$BASELINE_REV"
fi

# --- shells: cold start, Lambda under cargo lambda watch, Worker under workerd ------------------
sections=(cold-start lambda)
[ "${BENCH_SKIP_WORKER:-0}" = 1 ] || sections+=(worker)
log "shells: ${sections[*]}"
TXBRIDGE_BENCH_OUT="$OUT/shells.json" cargo bench -q -p txbridge-tests --bench shells -- "${sections[@]}" \
  >"$OUT/shells.log" 2>&1 || { tail -30 "$OUT/shells.log" >&2; exit 1; }

# --- sizes and report --------------------------------------------------------------------------
python3 - "$ROOT" "$OUT" <<'EOF'
import gzip, json, os, sys
root, out = sys.argv[1], sys.argv[2]
m = json.load(open(f"{out}/machine.json"))
m["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
lam = f"{root}/target/release/txbridge-lambda"
wasm = f"{root}/functions/worker/build/index_bg.wasm"
sizes = {"lambda_x86_64": os.path.getsize(lam),
         "hello_x86_64": os.path.getsize(f"{root}/target/release/hello-lambda")}
for name in ("txbridge-lambda", "hello-lambda"):
    z = f"{root}/target/lambda/{name}/bootstrap.zip"
    if os.path.exists(z):
        sizes[f"zip_{name}"] = os.path.getsize(z)
if os.path.exists(wasm):
    raw = open(wasm, "rb").read()
    sizes["wasm_raw"] = len(raw)
    sizes["wasm_gzip"] = len(gzip.compress(raw, 9))
sysroot = os.popen("rustc --print sysroot").read().strip()
sizes["aarch64_std"] = os.path.isdir(f"{sysroot}/lib/rustlib/aarch64-unknown-linux-gnu/lib")
json.dump({"machine": m, "sizes": sizes}, open(f"{out}/extra.json", "w"))
EOF
python3 "$ROOT/bench/report.py" "$ROOT" >"$ROOT/BENCHMARKS.md"
# Section 4b (the cold start interleaved with the hello world's, two runs compared).
bash "$ROOT/bench/cold-start.sh" >/dev/null
# Section 8 (contract v3: conditions, metrics, the Worker with a fleet's config).
bash "$ROOT/bench/contract-v3.sh" >/dev/null
# Section 9 (the consumer gate behind Envoy and nginx vs Envoy's jwt_authn).
bash "$ROOT/bench/gate.sh" >/dev/null
log "wrote BENCHMARKS.md"
