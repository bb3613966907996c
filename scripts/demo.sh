#!/usr/bin/env bash
# Demo of ossmount on a local OSS + STS server (osslocal), no cloud account needed:
# builds, starts osslocal, mounts a prefix through AssumeRole with 20-second tokens, writes,
# reads, lists, renames and deletes through the mount, shows the background credential
# refreshes in the log, then unmounts and cleans up. `--keep` leaves it mounted (and says how
# to clean up).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
KEEP=0
[[ "${1:-}" == "--keep" ]] && KEEP=1
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

say() { printf '\n\033[1m# %s\033[0m\n' "$*"; }

"$ROOT/scripts/install-deps.sh"
say "building (release)"
cargo build --release --workspace --bins --quiet

WORK=$(mktemp -d /tmp/ossmount-demo.XXXXXX)
MNT=$WORK/mnt
mkdir -p "$MNT" "$WORK/data"
AK=LTAI5tDemoAccessKeyId
SK=DemoAccessKeySecret0123456789
ROLE=acs:ram::1234567890123456:role/demo
SERVER_PID=
cleanup() {
  if [[ $KEEP == 1 ]]; then return; fi
  if grep -qs " $MNT " /proc/self/mountinfo; then fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -u -z "$MNT" || true; fi
  [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

say "starting osslocal (OSS + STS on one loopback port)"
"$TARGET/release/osslocal" --listen 127.0.0.1:0 --data-dir "$WORK/data" --bucket demo-bucket \
  --access-key "$AK:$SK" --role "$ROLE" --min-duration 10 --ready-file "$WORK/ready" \
  >"$WORK/osslocal.out" 2>"$WORK/osslocal.log" &
SERVER_PID=$!
for _ in $(seq 100); do [[ -s $WORK/ready ]] && break; sleep 0.05; done
ADDR=$(cat "$WORK/ready")
echo "osslocal at http://$ADDR"

say "mounting demo-bucket/team-a through AssumeRole with 20-second tokens"
export ALIBABA_CLOUD_ACCESS_KEY_ID=$AK ALIBABA_CLOUD_ACCESS_KEY_SECRET=$SK OSSMOUNT_ALLOW_SHORT_DURATION=1
set -x
"$TARGET/release/ossmount" demo-bucket/team-a "$MNT" --endpoint "http://$ADDR" --sts-endpoint "http://$ADDR" --region cn-hangzhou \
  --role-arn "$ROLE" --duration 20 --log-file "$WORK/ossmount.log" --log-level info
set +x
grep " $MNT " /proc/self/mountinfo | awk '{print "mounted:", $5, $(NF-1)}'

say "write, read, list, rename, delete"
(
  set -x
  mkdir -p "$MNT/reports/2026"
  echo "hello from ossmount" > "$MNT/reports/hello.txt"
  dd if=/dev/urandom of="$WORK/big.bin" bs=1M count=24 status=none
  cp "$WORK/big.bin" "$MNT/reports/2026/big.bin"
  cmp "$WORK/big.bin" "$MNT/reports/2026/big.bin"
  cat "$MNT/reports/hello.txt"
  ls -lR "$MNT"
  mv "$MNT/reports/hello.txt" "$MNT/reports/hi.txt"
  mv "$MNT/reports/2026" "$MNT/reports/archive"
  find "$MNT"
  rm -r "$MNT/reports/archive"
  ls -l "$MNT/reports"
)

say "keeping the mount busy for 45 s while the 20-second tokens are refreshed in the background"
end=$((SECONDS + 45))
while (( SECONDS < end )); do
  cp "$WORK/big.bin" "$MNT/reports/loop.bin" && cmp -s "$WORK/big.bin" "$MNT/reports/loop.bin" || { echo "operation failed"; exit 1; }
  sleep 1
done
echo "credential refreshes logged:"
grep -iE "refresh" "$WORK/ossmount.log" | sed -e 's/^/  /' | tail -n 8
echo "osslocal stats:"
curl -s "http://$ADDR/_osslocal/stats" | python3 -c 'import json,sys; s=json.load(sys.stdin); print("  AssumeRole calls:", s["sts"]["AssumeRole"]); print("  SecurityTokenExpired answers:", s["errors"].get("SecurityTokenExpired", 0))'

if [[ $KEEP == 1 ]]; then
  say "left mounted at $MNT (osslocal pid $SERVER_PID); clean up with: fusermount3 -u $MNT; kill $SERVER_PID; rm -rf $WORK"
  exit 0
fi
say "unmounting"
fusermount3 -u "$MNT"
echo "done"
