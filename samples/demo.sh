#!/usr/bin/env bash
# Walks the sample files through the commands paygate has today: builds paygate, checks the
# sample config, and validates every sample (the broken one shows the error report).
# Run from anywhere: bash samples/demo.sh
set -uo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "error: needs Rust (cargo); see https://rustup.rs" >&2; exit 2; }
echo "==> building paygate"
cargo build --quiet --locked || exit 2
pg() { echo; echo "\$ paygate $*"; ./target/debug/paygate --config samples/paygate.toml "$@"; echo "(exit $?)"; }
pg check-config
pg validate samples/payroll.xlsx --channel payroll
pg validate samples/payroll-gbk.csv --channel payroll
pg validate samples/supplier.csv --channel supplier
pg validate samples/broken.csv --channel supplier
exit 0
