#!/usr/bin/env bash
# Section 8 of BENCHMARKS.md: what contract v3 costs, with a fleet-like config (16 clusters,
# 7 policies with globs, the workload header, three request_details members, a traceparent):
#   - a policy condition (CEL) vs none, and the exchange line with its metrics (EMF) vs the
#     logger before the metrics: callgrind instructions per warm exchange, inside
#     `TxBridge::handle`, in both crypto configurations (deterministic ratios);
#   - the Worker's CPU per warm exchange under workerd (read from /proc, all threads and the
#     isolate's), without and with the condition, and its wasm size.
# `bash bench/run.sh` runs it last; alone: `bash bench/contract-v3.sh` (needs the Worker built by
# `.ci/worker.sh build`, valgrind; BENCH_SKIP_WORKER=1 skips workerd, BENCH_SKIP_CALLGRIND=1 keeps
# the last counts). It replaces the section
# between its markers in BENCHMARKS.md.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT="$TARGET/bench/v3"
mkdir -p "$OUT"
log() { echo "bench/contract-v3.sh: $*" >&2; }

bench_bin() {
  cargo bench -q -p txbridge-core --bench exchange --no-run --message-format=json "$@" 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "exchange":
        print(m["executable"])'
}
if [ "${BENCH_SKIP_CALLGRIND:-0}" != 1 ]; then
  log "building the core bench (rsa/p256 and aws-lc-rs)"
  BIN_PURE="$(bench_bin)"
  BIN_LC="$(bench_bin --features aws-lc,txbridge-signer/aws-lc)"
fi
cat /proc/loadavg >"$OUT/loadavg.start"

# Instructions per warm exchange: two callgrind runs of different lengths; (Ir_long - Ir_short) /
# (calls_long - calls_short) of TxBridge::handle, so the priming exchanges (key fetches, JWKS
# parsing) cancel out.
# BENCH_SKIP_CALLGRIND=1 keeps the previous run's counts (e.g. to re-measure only the Worker).
[ "${BENCH_SKIP_CALLGRIND:-0}" = 1 ] || : >"$OUT/callgrind.tsv"
for cfg in pure lc; do
  [ "${BENCH_SKIP_CALLGRIND:-0}" != 1 ] || break
  bin=$BIN_PURE
  [ "$cfg" = pure ] || bin=$BIN_LC
  for id in rs256_plain rs256_condition es256_plain es256_condition \
    rs256_plain_log_before_metrics rs256_plain_log_metrics; do
    [ "$cfg" = lc ] || case $id in *log*) continue ;; esac
    for secs in 1 3; do
      f="$OUT/cg.$cfg.$id.$secs"
      log "callgrind $cfg fleet/$id ${secs}s"
      CRITERION_HOME="$OUT/criterion-cg" valgrind --tool=callgrind --callgrind-out-file="$f.out" \
        --toggle-collect='*TxBridge*handle*' "$bin" --bench --profile-time "$secs" "^fleet/$id\$" \
        >"$f.log" 2>&1
      python3 - "$f.out" "$cfg" "$id" "$secs" >>"$OUT/callgrind.tsv" <<'EOF'
import re, sys
path, cfg, bid, secs = sys.argv[1:]
total = 0
calls = 0
names = {}
cur_fn = None
pending_calls = None
# The collected events: "summary:" / "totals:" line; calls into TxBridge::handle from outside it.
for line in open(path, errors="replace"):
    if line.startswith("totals:") or line.startswith("summary:"):
        total = max(total, int(line.split()[1]))
    m = re.match(r"(c?fn)=\((\d+)\)(?: (.*))?", line)
    if m:
        kind, i, name = m.groups()
        if name:
            names[i] = name.strip()
        if kind == "fn":
            cur_fn = names.get(i, "")
        else:
            callee = names.get(i, "")
            pending_calls = callee
        continue
    m = re.match(r"calls=(\d+)", line)
    if m and pending_calls is not None:
        callee = pending_calls
        pending_calls = None
        if (re.search(r"TxBridge>::handle::\{\{closure\}\}$", callee)
                and not re.search(r"TxBridge>::handle", cur_fn or "")):
            calls += int(m.group(1))
print(f"{cfg}\t{bid}\t{secs}\t{total}\t{calls}")
EOF
    done
  done
done

# The Worker under workerd: CPU per warm exchange, plain and with the condition.
: >"$OUT/worker.json"
if [ "${BENCH_SKIP_WORKER:-0}" != 1 ] && [ -f functions/worker/build/index_bg.wasm ]; then
  cargo build -q -p txbridge-harness
  for level in info warn; do
    log "workerd: worker-fleet at log level $level"
    # 1000 per batch: the clock ticks are 10 ms, so a batch is exact to 0.01 ms per exchange.
    TXBRIDGE_BENCH_CPU_N="${TXBRIDGE_BENCH_CPU_N:-1000}" \
      TXBRIDGE_BENCH_WORKER_LOG=$level TXBRIDGE_BENCH_OUT="$OUT/worker.$level.json" \
      cargo bench -q -p txbridge-tests --bench shells -- worker-fleet >"$OUT/worker.$level.log" 2>&1 ||
      { tail -30 "$OUT/worker.$level.log" >&2; exit 1; }
  done
fi
cat /proc/loadavg >"$OUT/loadavg.end"

python3 - "$ROOT" "$OUT" <<'EOF'
import gzip, json, os, re, sys, datetime
root, out = sys.argv[1], sys.argv[2]
rows = {}
for line in open(f"{out}/callgrind.tsv"):
    cfg, bid, secs, total, calls = line.split("\t")
    rows[(cfg, bid, int(secs))] = (int(total), int(calls))

def per_exchange(cfg, bid):
    a, b = rows.get((cfg, bid, 1)), rows.get((cfg, bid, 3))
    if not a or not b or b[1] <= a[1]:
        return None
    return (b[0] - a[0]) / (b[1] - a[1])

L = []
w = L.append
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
w("<!-- section 8: generated by bash bench/contract-v3.sh -->")
w("## 8. Contract v3: conditions, metrics, the Worker with a fleet's config")
w("")
w(f"Generated by `bash bench/contract-v3.sh` on {now} (also run by `bench/run.sh`). Load average "
  f"{open(out + '/loadavg.start').read().split()[:3]} at start, "
  f"{open(out + '/loadavg.end').read().split()[:3]} at end.")
w("")
w("A fleet-like config (`fleet` group of `functions/core/benches/exchange.rs`, and `worker-fleet` of "
  "`tests/benches/shells.rs`): 16 clusters, 7 policies (4 with `workloads` globs), an exchange "
  "with `scope`, three `request_details` members, the `X-Txbridge-Workload` header and a "
  "`traceparent`. Instructions per warm exchange inside `TxBridge::handle` (callgrind; two runs of "
  "different lengths, differenced, so the priming key fetches cancel out).")
w("")
w("| build | exchange | plain | with a condition | condition / plain |")
w("|---|---|---|---|---|")
worst = 0.0
for cfg, title in (("lc", "aws-lc-rs (Lambda)"), ("pure", "rsa/p256 (Worker's Rust)")):
    for alg in ("rs256", "es256"):
        p, c = per_exchange(cfg, f"{alg}_plain"), per_exchange(cfg, f"{alg}_condition")
        if p and c:
            worst = max(worst, c / p)
            w(f"| {title} | {alg.upper()} | {p/1e3:,.1f} k | {c/1e3:,.1f} k | **{c/p:.3f}x** |")
w("")
COND = 'request.request_details.currency in ["EUR", "USD"] && request.workload.startsWith("payments/")'
w(f"The condition: `{COND}` "
  "on the policy that allows (compiled once when the config loads; the activation is built "
  "only for policies that carry a condition and match the subject). "
  f"Goal <= 1.1x: **{'met' if worst and worst <= 1.1 else 'not met'}** (worst {worst:.3f}x).")
w("")
b, m = per_exchange("lc", "rs256_plain_log_before_metrics"), per_exchange("lc", "rs256_plain_log_metrics")
n = per_exchange("lc", "rs256_plain")
if b and m:
    w("The exchange line with its metrics (aws-lc-rs build, RS256, fleet config; the line written to "
      "a sink):")
    w("")
    w("| logger | instructions per exchange | vs before |")
    w("|---|---|---|")
    if n:
        w(f"| none (no subscriber: for orientation) | {n/1e3:,.1f} k | {n/b:.3f}x |")
    w(f"| before the metrics: tracing-subscriber's JSON formatter, fields nested (the Lambda's until then) | {b/1e3:,.1f} k | 1.000x |")
    w(f"| today: `log_line`, flat members + the EMF record (`_aws`), both shells | {m/1e3:,.1f} k | **{m/b:.3f}x** |")
    w("")
    w(f"Goal <= +3% instructions: **{'met' if m / b <= 1.03 else 'not met'}** ({(m/b-1)*100:+.1f}%).")
    w("")

wasm = f"{root}/functions/worker/build/index_bg.wasm"
if os.path.exists(wasm):
    raw = open(wasm, "rb").read()
    gz = len(gzip.compress(raw, 9))
    w(f"Worker wasm: {len(raw)/1024:,.0f} KiB raw, **{gz/1024:,.0f} KiB** gzip -9 (goal <= 400 KiB: "
      f"**{'met' if gz <= 400*1024 else 'not met'}**; 294 KiB before the CEL evaluator, so conditions "
      f"cost {gz/1024-294:,.0f} KiB gzip).")
    w("")

workers = {}
for level in ("info", "warn"):
    p = f"{out}/worker.{level}.json"
    if os.path.exists(p):
        d = json.load(open(p)).get("worker_fleet")
        if d:
            workers[level] = d
if workers:
    w("The Worker under `workerd serve` with that config: CPU per warm exchange read from "
      "`/proc/<pid>/task/*/stat` (batch of exchanges minus a batch of `GET /healthz`, divided by N; "
      "median of the rounds), the isolate's thread and all threads.")
    w("")
    w("| log level | variant | RS256 isolate | RS256 all threads | ES256 isolate | ES256 all threads |")
    w("|---|---|---|---|---|---|")
    worst_w = 0.0
    for level, d in workers.items():
        for variant in ("plain", "condition"):
            v = d.get(variant, {})
            r, e = v.get("rs256", {}), v.get("es256", {})
            cells = [r.get("isolate_thread_ms"), r.get("all_threads_ms"),
                     e.get("isolate_thread_ms"), e.get("all_threads_ms")]
            if level == "info":
                worst_w = max([worst_w] + [c for c in cells if c is not None])
            w(f"| {level} | {variant} | " + " | ".join(
                "-" if c is None else f"{c:.2f} ms" for c in cells) + " |")
    n = next(iter(workers.values())).get("n")
    w("")
    w(f"N = {n} per batch. Goal <= 0.5 ms per warm exchange, all threads, at info: "
      f"**{'met' if worst_w <= 0.5 else 'not met'}** (worst {worst_w:.2f} ms). The clock ticks are "
      "10 ms, so each batch's figure is exact to 10 ms / N.")
    w("")
w("<!-- end of section 8 -->")
section = "\n".join(L) + "\n"

sys.path.insert(0, f"{root}/bench")
from section import replace_section
replace_section(f"{root}/BENCHMARKS.md", "8", section)
EOF
log "wrote section 8 of BENCHMARKS.md"
