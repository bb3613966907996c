#!/usr/bin/env bash
# POSIX conformance against a real mount of osslocal:
#   fsx (randomised read/write/truncate/mmap, >= 20,000 operations over several seeds)
#   pjdfstest (mounted with allow_other,default_permissions; every failing case must be listed,
#   with its reason, in doc/SEMANTICS.md)
# and a check afterwards that the mount is still alive. Installs fsx and pjdfstest from
# crates.io (cargo install) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
FSX_SEEDS=${FSX_SEEDS:-"1 2 3 4"}
FSX_OPS=${FSX_OPS:-5000}
PJD_TIMEOUT=${PJD_TIMEOUT:-900}

# Tools come from crates.io, installed once per machine into cargo's bin directory.
need_tool() {
  local crate=$1
  command -v "$crate" >/dev/null 2>&1 && return
  echo "installing $crate from crates.io"
  cargo install --locked --quiet "$crate"
}
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
# pjdfstest builds against libacl.
if ! dpkg -s libacl1-dev >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libacl1-dev acl >/dev/null
fi
need_tool fsx
need_tool pjdfstest
id ossmount-pjd >/dev/null 2>&1 || useradd --no-create-home --shell /usr/sbin/nologin ossmount-pjd

WORK=$(mktemp -d /tmp/ossmount-posix.XXXXXX)
# pjdfstest switches to unprivileged users that must be able to reach the mount point (mktemp
# makes the directory 0700).
chmod 0755 "$WORK"
MNT=$WORK/mnt
mkdir -p "$MNT" "$WORK/data"
SERVER_PID=
cleanup() {
  if grep -qs " $MNT " /proc/self/mountinfo; then fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -u -z "$MNT" || umount -l "$MNT" || true; fi
  [[ -n $SERVER_PID ]] && { kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null || true; }
  rm -rf "$WORK"
}
trap cleanup EXIT
AK=LTAI5tPosixAccessKey
SK=PosixSecret0123456789
"$TARGET/release/osslocal" --listen 127.0.0.1:0 --data-dir "$WORK/data" --bucket posix-bucket \
  --access-key "$AK:$SK" --ready-file "$WORK/ready" >/dev/null 2>"$WORK/osslocal.log" &
SERVER_PID=$!
for _ in $(seq 200); do [[ -s $WORK/ready ]] && break; sleep 0.05; done
ADDR=$(cat "$WORK/ready")
ALIBABA_CLOUD_ACCESS_KEY_ID=$AK ALIBABA_CLOUD_ACCESS_KEY_SECRET=$SK \
  "$TARGET/release/ossmount" posix-bucket/run "$MNT" --endpoint "http://$ADDR" --region cn-hangzhou \
  -o allow_other,default_permissions --log-file "$WORK/ossmount.log" --log-level info

alive() {
  stat "$MNT" >/dev/null && touch "$MNT/.alive" && [[ -f $MNT/.alive ]] && rm "$MNT/.alive" \
    || { echo "mount is not alive"; tail -50 "$WORK/ossmount.log"; exit 1; }
}

echo "--- fsx: seeds $FSX_SEEDS, $FSX_OPS operations each"
cat > "$WORK/fsx.toml" <<'TOML'
flen = 262144
[opsize]
max = 65536
[weights]
close_open = 1
read = 10
write = 10
mapread = 5
mapwrite = 5
invalidate = 1
truncate = 5
fsync = 1
TOML
total=0
for seed in $FSX_SEEDS; do
  timeout 600 fsx -q -f "$WORK/fsx.toml" -N "$FSX_OPS" -S "$seed" -P "$WORK" "$MNT/fsx-$seed" \
    || { echo "fsx seed $seed FAILED"; tail -40 "$WORK/ossmount.log"; exit 1; }
  total=$((total + FSX_OPS))
done
echo "fsx: $total operations clean"
alive

echo "--- pjdfstest"
cat > "$WORK/pjd.toml" <<'TOML'
[features]
utimensat = {}
utime_now = {}
[settings]
naptime = 0.02
allow_remount = false
[dummy_auth]
entries = [["nobody", "nogroup"], ["ossmount-pjd", "ossmount-pjd"]]
TOML
mkdir -p "$MNT/pjd"
chmod 0777 "$MNT/pjd"
set +e
timeout "$PJD_TIMEOUT" pjdfstest -c "$WORK/pjd.toml" -p "$MNT/pjd" > "$WORK/pjd.out" 2>&1
rc=$?
set -e
mkdir -p "$TARGET/posix" && cp "$WORK/pjd.out" "$TARGET/posix/pjdfstest.out"
# pjdfstest's own summary counts the known failures as "failed"; report them as what they are.
summary=$(grep -E '^Summary' "$WORK/pjd.out") || { echo "pjdfstest did not finish (rc $rc)"; tail -30 "$WORK/pjd.out"; exit 1; }
read -r pjd_failed pjd_skipped pjd_passed < <(echo "$summary" | sed -E 's/^Summary: ([0-9]+) failed, ([0-9]+) skipped, ([0-9]+) passed.*/\1 \2 \3/')
alive
failed=$(grep -E '^[a-z_0-9:]+ +FAILED' "$WORK/pjd.out" | awk '{print $1}' || true)
unlisted=()
for t in $failed; do
  grep -qF "\`$t\`" "$ROOT/doc/SEMANTICS.md" || unlisted+=("$t")
done
echo "pjdfstest: $pjd_passed cases pass, $pjd_skipped skipped, $pjd_failed documented exceptions (each listed with its reason in doc/SEMANTICS.md)"
if [[ ${#unlisted[@]} -gt 0 ]]; then
  echo "pjdfstest cases failing but not listed in doc/SEMANTICS.md:"
  printf '  %s\n' "${unlisted[@]}"
  for t in "${unlisted[@]}"; do grep -A3 -E "^${t} " "$WORK/pjd.out" | head -4; done
  exit 1
fi
echo "posix: ok"
