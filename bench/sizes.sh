#!/usr/bin/env bash
# Deployment sizes of the Lambda on both architectures, each built the way it is deployed
# (`functions/lambda/build.sh ARCH`, release profile): txbridge-lambda with the KMS signers
# (default features), without them (`--no-default-features --features aws-lc`, what a
# `local`-signer deployment needs), and the lambda_http hello world (bench/hello-lambda, built in
# the same cargo invocation as txbridge with the KMS signers, as bench/run.sh always has).
# Writes target/bench/sizes-ARCH.tsv, target/bench/sizes-arch.json and target/bench/sizes-arch.md (the table bench/report.py
# puts into BENCHMARKS.md). Sizes only: arm64 timings need a Graviton host.
#
#   bash bench/sizes.sh                   # both architectures
#   SIZES_ARCHS=arm64 bash bench/sizes.sh
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT="$ROOT/target/bench"
mkdir -p "$OUT"
log() { echo "bench/sizes.sh: $*" >&2; }

for arch in ${SIZES_ARCHS:-x86_64 arm64}; do
  case "$arch" in
    arm64) triple=aarch64-unknown-linux-gnu ;;
    x86_64) triple=x86_64-unknown-linux-gnu ;;
    *) log "unknown architecture $arch"; exit 2 ;;
  esac
  ROWS="$OUT/sizes-$arch.tsv"
  : >"$ROWS"
  for variant in kms local; do
    if [ "$variant" = kms ]; then args=(-p hello-lambda); else args=(--no-default-features --features aws-lc); fi
    log "$arch, $variant: build.sh $arch ${args[*]}"
    start=$(date +%s)
    # Zips of their own: the deployable target/lambda/txbridge-lambda/bootstrap.zip stays as it was.
    if ! zip=$(bash functions/lambda/build.sh "$arch" --lambda-dir "$TARGET/lambda-sizes/$arch-$variant" \
        "${args[@]}" 2>"$OUT/sizes-$arch-$variant.log"); then
      tail -30 "$OUT/sizes-$arch-$variant.log" >&2
      exit 1
    fi
    secs=$(($(date +%s) - start))
    bin="$TARGET/$triple/release/txbridge-lambda"
    printf '%s\t%s\t%s\t%s\t%s\n' "$arch" "txbridge-$variant" "$(stat -c %s "$bin")" "$(stat -c %s "$zip")" "$secs" >>"$ROWS"
    if [ "$variant" = kms ]; then
      printf '%s\t%s\t%s\t%s\t%s\n' "$arch" hello "$(stat -c %s "$TARGET/$triple/release/hello-lambda")" \
        "$(stat -c %s "$(dirname "$(dirname "$zip")")/hello-lambda/bootstrap.zip")" "" >>"$ROWS"
    fi
  done
done

# Both architectures' rows, whichever run measured them (SIZES_ARCHS=... runs one).
python3 - "$OUT" "$OUT/sizes-arch.json" "$OUT/sizes-arch.md" <<'EOF'
import datetime, glob, json, subprocess, sys
rows = [l.rstrip("\n").split("\t") for f in sorted(glob.glob(f"{sys.argv[1]}/sizes-*.tsv"))
        for l in open(f) if l.strip()]
res = {}
for arch, what, binary, zipped, secs in rows:
    res.setdefault(arch, {})[what] = {"binary": int(binary), "zip": int(zipped),
                                      "build_s": int(secs) if secs else None}
def rustc_version(rustc):
    try:
        v = subprocess.run([rustc, "-V"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""
    return " ".join(v.split()[:2])  # "rustc 1.96.0"
rustc = rustc_version("/usr/bin/rustc")
rustc_path = rustc_version("rustc")
json.dump({"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "rustc_arm64": rustc, "rustc_x86_64": rustc_path, "sizes": res}, open(sys.argv[2], "w"), indent=1)
md = []
w = md.append
w(f"Release profile, `bash functions/lambda/build.sh ARCH` (cargo-lambda, zig links), measured "
  f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d} by `bash bench/sizes.sh`. arm64 is "
  f"cross-built with Debian's {rustc or 'rustc'} and build-std (`../shared/toolchain/ARM64.md`), "
  f"x86_64 with the {rustc_path or 'rustc'} on PATH. \"without KMS\" is `--no-default-features --features "
  f"aws-lc`: the `local` signer only, no AWS SDK.")
w("")
w("| | binary (stripped) | zip | zip vs hello world |")
w("|---|---|---|---|")
for arch in ("arm64", "x86_64"):
    r = res.get(arch)
    if not r:
        continue
    hz = r.get("hello", {}).get("zip")
    for what, label in (("txbridge-kms", "txbridge-lambda (default: KMS signers)"),
                        ("txbridge-local", "txbridge-lambda without KMS (`local` signer)"),
                        ("hello", "hello world")):
        if what in r:
            ratio = f"{r[what]['zip'] / hz:.2f}x" if hz else "-"
            w(f"| {arch}: {label} | {r[what]['binary']:,} B | {r[what]['zip']:,} B | {ratio} |")
w("")
open(sys.argv[3], "w").write("\n".join(md) + "\n")
print("\n".join(md))
EOF
