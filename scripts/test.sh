#!/usr/bin/env bash
# Run every test of ossmount on a fresh or warm machine: installs what is missing (fuse3,
# Python venv with the official SDKs, cargo-nextest if absent), then
#   1. format, lint and layering checks
#   2. unit + integration tests (cargo nextest; falls back to cargo test)
#   3. SDK interop tests against osslocal (tests/interop, official Python SDKs)
#   4. FUSE end-to-end tests (tests/e2e, real mounts of osslocal driven by ordinary tools)
# Exits non-zero on any failure. Usage: scripts/test.sh [--quick]  (--quick skips e2e + interop)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
QUICK=0
[[ "${1:-}" == "--quick" ]] && QUICK=1

log() { printf '\n=== %s ===\n' "$*"; }

# ---------------------------------------------------------------- system packages
"$ROOT/scripts/install-deps.sh"

export CARGO_TERM_COLOR=never
export RUST_BACKTRACE=1

# ---------------------------------------------------------------- static checks
log "cargo fmt --check"
cargo fmt --all -- --check
log "layering"
"$ROOT/scripts/check-layering.sh"
log "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

# ---------------------------------------------------------------- build
log "build"
cargo build --workspace --all-targets --quiet
cargo build --workspace --release --bins --quiet

# ---------------------------------------------------------------- unit + integration
log "unit and integration tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast --profile ci
else
  cargo test --workspace --no-fail-fast
fi

if [[ $QUICK == 1 ]]; then
  echo "quick mode: interop and FUSE end-to-end tests skipped"
  exit 0
fi

# ---------------------------------------------------------------- SDK interop
log "SDK interop (official Python SDKs against osslocal)"
"$ROOT/scripts/interop.sh"

# ---------------------------------------------------------------- FUSE end to end
if [[ -x "$ROOT/scripts/e2e.sh" ]]; then
  log "FUSE end-to-end"
  "$ROOT/scripts/e2e.sh"
fi

log "all tests passed"
