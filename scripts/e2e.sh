#!/usr/bin/env bash
# FUSE end-to-end tests: real mounts of osslocal driven by ordinary tools (tests/e2e, pytest),
# then POSIX conformance: fsx (randomised read/write/truncate) and pjdfstest against a mount.
# Needs the release binaries (cargo build --release --workspace) and the venv of interop.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
VENV=$ROOT/.venv
[[ -x $VENV/bin/python ]] || "$ROOT/scripts/interop.sh" --setup-only
[[ -x $TARGET/release/ossmount && -x $TARGET/release/osslocal ]] || cargo build --release --workspace --bins --quiet
"$VENV/bin/python" -m pytest -q -p no:cacheprovider --timeout 600 "$ROOT/tests/e2e" "$@"
"$ROOT/scripts/posix.sh"
