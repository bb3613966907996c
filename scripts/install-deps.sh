#!/usr/bin/env bash
# Install the system packages the tests, the demo and the benchmarks need, when missing.
# Idempotent and quiet when everything is present.
set -euo pipefail
need=()
command -v fusermount3 >/dev/null 2>&1 || need+=(fuse3)
command -v rsync >/dev/null 2>&1 || need+=(rsync)
command -v git >/dev/null 2>&1 || need+=(git)
command -v curl >/dev/null 2>&1 || need+=(curl)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
if [[ ${#need[@]} -gt 0 ]]; then
  echo "installing: ${need[*]}"
  if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
[[ -e /dev/fuse ]] || { echo "error: /dev/fuse is missing: FUSE tests cannot run on this machine" >&2; exit 1; }
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest"
  cargo install --locked cargo-nextest >/dev/null 2>&1 || echo "warning: cargo-nextest unavailable, using cargo test"
fi
