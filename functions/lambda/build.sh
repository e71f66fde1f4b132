#!/usr/bin/env bash
# Builds the txbridge Lambda's deployment package for one architecture.
#
#   bash functions/lambda/build.sh arm64     # Graviton (the Terraform module's default)
#   bash functions/lambda/build.sh x86_64
#
# Writes target/lambda/txbridge-lambda/bootstrap.zip ($CARGO_TARGET_DIR/lambda/... when
# CARGO_TARGET_DIR is set), release profile, and prints its path. The unzipped binary stays in
# target/<triple>/<profile>/txbridge-lambda. Options:
#   --profile NAME (or TXBRIDGE_LAMBDA_PROFILE=NAME)  another Cargo profile, e.g. ci-arm64 (CI's
#                                                     e2e build under qemu; never deployed), whose
#                                                     zip goes to target/lambda-NAME/ instead
#   --lambda-dir DIR                                  the zip goes to DIR/txbridge-lambda/ instead
#   anything else is passed to `cargo lambda build`, e.g. `--no-default-features --features aws-lc`
#   (no KMS signers) or `-p hello-lambda` (also build the benchmark's hello world)
#
# cargo-lambda (with zig, which links for either architecture) comes from `.ci/lambda.sh install`.
# arm64: no rustup aarch64 standard library is needed. Debian's rustc-web and rust-web-src (the
# standard library's source; `bash .ci/worker.sh install` installs them) build it with build-std.
# Recipe: ../shared/toolchain/ARM64.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
usage() { echo "usage: $0 arm64|x86_64 [--profile NAME] [cargo lambda build args...]" >&2; exit 2; }

arch="${1:-}"
[ $# -gt 0 ] && shift
profile="${TXBRIDGE_LAMBDA_PROFILE:-release}"
extra=()
lambda_dir_arg=""
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) [ $# -ge 2 ] || usage; profile="$2"; shift 2 ;;
    --profile=*) profile="${1#--profile=}"; shift ;;
    --lambda-dir) [ $# -ge 2 ] || usage; lambda_dir_arg="$2"; shift 2 ;;
    *) extra+=("$1"); shift ;;
  esac
done

CL_BIN="$(bash "$ROOT/.ci/lambda.sh" install)"
cd "$ROOT"
case "$arch" in
  arm64 | aarch64)
    target=aarch64-unknown-linux-gnu
    for f in /usr/bin/cargo /usr/lib/rustlib/src/rust/library/std/Cargo.toml; do
      [ -e "$f" ] || {
        echo "build.sh: $f missing: install Debian's rustc-web cargo-web rust-web-src (bash .ci/worker.sh install)" >&2
        exit 1
      }
    done
    # The venv first (cargo-lambda runs `python3 -m ziglang`), then Debian's cargo and rustc,
    # whose standard library is built for the target from source. Drop what a calling rustup
    # cargo exported so that it cannot pull its own toolchain back in.
    unset RUSTC RUSTDOC RUSTC_WRAPPER RUSTUP_TOOLCHAIN CARGO
    export PATH="$CL_BIN:/usr/bin:$PATH"
    export RUSTC_BOOTSTRAP=1 CARGO_UNSTABLE_BUILD_STD=std,panic_abort
    ;;
  x86_64 | x86-64 | amd64)
    target=x86_64-unknown-linux-gnu
    export PATH="$CL_BIN:$PATH"
    ;;
  *) usage ;;
esac

# The release zip goes where the Terraform module looks for it; any other profile's beside it
# (lambda-PROFILE/), so that a CI build never stands in for the deployable one.
target_dir="${CARGO_TARGET_DIR:-$ROOT/target}"
if [ "$profile" = release ]; then
  prof=(--release)
  lambda_dir="$target_dir/lambda"
else
  prof=(--profile "$profile")
  lambda_dir="$target_dir/lambda-$profile"
fi
[ -z "$lambda_dir_arg" ] || lambda_dir="$lambda_dir_arg"
cargo lambda build "${prof[@]}" --target "$target" --output-format zip --lambda-dir "$lambda_dir" \
  -p txbridge-lambda "${extra[@]}" >&2

zip="$lambda_dir/txbridge-lambda/bootstrap.zip"
[ -f "$zip" ] || { echo "build.sh: $zip was not written" >&2; exit 1; }
echo "$zip"
