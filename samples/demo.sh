#!/usr/bin/env bash
# paygate's main job on embedded defaults: installs what is missing (.ci/deps), builds, and runs
# `paygate demo` — the daemon and a simulated bank, end to end, in a new folder (kept, so that
# you can look at everything afterwards). Arguments go to `paygate demo` (e.g. --dir DIR).
# Run from anywhere: bash samples/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "error: needs Rust (cargo); see https://rustup.rs" >&2; exit 2; }
bash .ci/deps
echo "==> building paygate"
cargo build --quiet --locked
exec ./target/debug/paygate demo "$@"
