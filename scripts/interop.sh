#!/usr/bin/env bash
# SDK interop suite: drives osslocal with the official Alibaba Cloud Python SDKs
# (oss2, alibabacloud-oss-v2, aliyun-python-sdk-core/sts). Works on a fresh machine:
# creates .venv in the repo root, installs the pinned SDKs, builds osslocal, runs pytest.
# Exit status is non-zero on any failure (including a missing tool or binary).
#
# Environment:
#   CARGO_TARGET_DIR   honoured for the osslocal build (default: <repo>/target)
#   INTEROP_PROFILE    release|debug (default: debug, to share the pre-warmed build cache)
#   INTEROP_TIMEOUT    per-test timeout in seconds (default: 60)
#   PYTHON             python interpreter for the venv (default: python3)
# Extra arguments are passed to pytest (e.g. -k multipart, -x); --setup-only only prepares .venv.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# A relative CARGO_TARGET_DIR means relative to the caller's directory, as for cargo itself.
if [ -n "${CARGO_TARGET_DIR:-}" ] && [ "${CARGO_TARGET_DIR#/}" = "$CARGO_TARGET_DIR" ]; then
    export CARGO_TARGET_DIR="$PWD/$CARGO_TARGET_DIR"
fi
cd "$repo"

python="${PYTHON:-python3}"
venv="$repo/.venv"
profile="${INTEROP_PROFILE:-debug}"
timeout_secs="${INTEROP_TIMEOUT:-60}"

log() { printf '[interop] %s\n' "$*" >&2; }

ensure_python() {
    if ! command -v "$python" >/dev/null 2>&1; then
        log "installing python3 (apt-get)"
        apt_install python3 python3-venv
    fi
}

apt_install() {
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@"
}

ensure_venv() {
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
        return
    fi
    rm -rf "$venv"
    if ! "$python" -m venv "$venv" >/dev/null 2>&1; then
        log "python3 -m venv failed; installing python3-venv (apt-get)"
        rm -rf "$venv"
        local ver
        ver="$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
        apt_install python3-venv "python${ver}-venv" || apt_install python3-venv
        "$python" -m venv "$venv"
    fi
}

install_requirements() {
    local req="$repo/tests/interop/requirements.txt"
    local stamp="$venv/.interop-requirements"
    if [ -f "$stamp" ] && cmp -s "$req" "$stamp"; then
        return
    fi
    log "installing pinned SDKs into .venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
    cp "$req" "$stamp"
}

build_osslocal() {
    local target_dir="${CARGO_TARGET_DIR:-$repo/target}"
    local flags=()
    if [ "$profile" = "release" ]; then flags+=(--release); fi
    log "building osslocal ($profile)"
    cargo build -p osslocal "${flags[@]}"
    OSSLOCAL_BIN="$target_dir/$profile/osslocal"
    if [ ! -x "$OSSLOCAL_BIN" ]; then
        log "osslocal binary missing after build: $OSSLOCAL_BIN"
        exit 1
    fi
    export OSSLOCAL_BIN
}

ensure_python
ensure_venv
install_requirements
if [ "${1:-}" = "--setup-only" ]; then
    exit 0
fi
build_osslocal

log "running SDK interop tests against $OSSLOCAL_BIN"
cd "$repo/tests/interop"
set +e
"$venv/bin/python" -m pytest -c "$repo/tests/interop/pytest.ini" --timeout="$timeout_secs" "$@" .
status=$?
set -e
if [ "$status" -eq 5 ]; then
    log "pytest collected no tests: treating as failure"
    exit 1
fi
exit "$status"
