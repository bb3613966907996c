#!/usr/bin/env bash
# Benchmarks against osslocal: ossmount, s3fs and rclone mounts side by side with curl on the
# same objects. Prints a markdown table and writes JSON to target/bench/. Options are passed to
# scripts/bench.py (e.g. --runs 5 --big-mib 2048 --targets ossmount,s3fs,rclone).
set -euo pipefail
cd "$(dirname "$0")/.."
"$(pwd)/scripts/install-deps.sh"
need=()
for p in fio s3fs rclone; do command -v $p >/dev/null 2>&1 || need+=($p); done
if [[ ${#need[@]} -gt 0 ]]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --release --workspace --bins --quiet
cargo build --release --example nullfs --quiet
exec python3 scripts/bench.py "$@"
