#!/usr/bin/env bash
# Walks the sample files through the commands paygate has today: builds paygate, checks the
# sample config, validates every sample (the broken one shows the error report) and converts
# them to the banks' formats (pain.001, the GBK payroll layout, a fixed-width layout).
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
pg formats
mkdir -p target/demo
pg convert samples/supplier.csv --channel supplier -o target/demo/supplier.pain001.xml
pg convert samples/payroll-gbk.csv --channel payroll -o target/demo/payroll-icbc.csv
echo; echo "\$ head -3 target/demo/payroll-icbc.csv   (GBK, shown as UTF-8)"
iconv -f GBK -t UTF-8 target/demo/payroll-icbc.csv 2>/dev/null | head -3
pg convert samples/payroll.xlsx --channel payroll --format fixed-width-gbk -o target/demo/payroll-fixed.txt
pg convert samples/broken.csv --channel supplier -o target/demo/broken.xml
exit 0
