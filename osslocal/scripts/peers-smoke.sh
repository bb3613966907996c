#!/usr/bin/env bash
# Real-client smoke test of the osslocal S3 dialect: mounts a release osslocal with s3fs
# (SigV4 and SigV2) and rclone (SigV4), and runs the benchmark's file operations on each
# mount. Installs s3fs and rclone with apt-get when missing. Exits non-zero on any failure;
# every mount and the server are always torn down.
#
#   osslocal/scripts/peers-smoke.sh [MiB]      (default 64 MiB for the big file)
#
# PEERS_MANY_FILES (default 10000) objects are seeded under many/ through plain OSS PUTs before
# each mount, and listed through the mount with ls -l and find (paginated listings).
set -euo pipefail

BIG_MIB=${1:-64}
SMALL_FILES=200
MANY_FILES=${PEERS_MANY_FILES:-10000}
ACCESS_KEY=smokeAK
SECRET_KEY=smokeSK0123456789
BUCKET=bench-bucket
REGION=cn-hangzhou

here=$(cd "$(dirname "$0")/.." && pwd)
root=$(cd "$here/.." && pwd)

if ! command -v s3fs >/dev/null || ! command -v rclone >/dev/null; then
    echo "installing s3fs and rclone" >&2
    apt-get install -y s3fs rclone >/dev/null || { echo "FAIL: cannot install s3fs/rclone" >&2; exit 2; }
fi
command -v jq >/dev/null || { echo "FAIL: jq missing" >&2; exit 2; }
command -v fusermount3 >/dev/null || { echo "FAIL: fusermount3 missing" >&2; exit 2; }

(cd "$root" && cargo build --release -q -p osslocal)
bin="$root/target/release/osslocal"

work=$(mktemp -d)
server_pid=""
mounts=()
peer_pid=""

cleanup() {
    local m
    for m in "${mounts[@]}"; do
        fusermount3 -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
    if [[ -n "$peer_pid" ]]; then kill "$peer_pid" 2>/dev/null || true; fi
    if [[ -n "$server_pid" ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

# A fresh server per client; its log records the signature scheme of every S3 request.
start_server() {
    local label=$1
    rm -f "$work/ready"
    # --anonymous lets curl seed objects unsigned; every S3 request of the peer is still
    # checked to be signed with the expected scheme (stop_server).
    OSSLOCAL_LOG=osslocal::s3=debug "$bin" --listen 127.0.0.1:0 --data-dir "$work/data-$label" \
        --bucket "$BUCKET" --region "$REGION" --access-key "$ACCESS_KEY:$SECRET_KEY" --no-fsync --anonymous \
        --ready-file "$work/ready" >"$work/server-$label.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 100); do [[ -s "$work/ready" ]] && break; sleep 0.1; done
    [[ -s "$work/ready" ]] || { echo "FAIL: osslocal did not start" >&2; cat "$work/server-$label.log" >&2; return 1; }
    addr=$(head -1 "$work/ready")
    echo "[$label] osslocal on $addr, seeding $MANY_FILES objects"
    printf 'x' >"$work/one"
    seq "$MANY_FILES" | awk -v f="$work/one" -v u="http://$addr/$BUCKET/many/" \
        '{ printf "upload-file = \"%s\"\nurl = \"%sf%05d\"\n", f, u, $1 }' >"$work/seed.curl"
    curl -sf -K "$work/seed.curl" -o /dev/null || { echo "FAIL: seeding" >&2; return 1; }
    curl -sf -X POST "http://$addr/_osslocal/stats/reset" >/dev/null
}

# Stop the server. Every S3 request must have used scheme $2 and passed its signature check,
# and the workload must have reached the server (reads, writes, deletes, listings).
stop_server() {
    local label=$1 scheme=$2 log="$work/server-$1.log" stats total wrong bad op
    stats=$(curl -s "http://$addr/_osslocal/stats")
    echo "[$label] stats: $stats"
    kill "$server_pid"
    wait "$server_pid" || true
    server_pid=""
    sed 's/\x1b\[[0-9;]*m//g' "$log" | grep 'S3 request' >"$log.s3" || true
    total=$(wc -l <"$log.s3")
    wrong=$(grep -vc "scheme=\"$scheme\" " "$log.s3" || true)
    bad=$(grep -c 'ok=false' "$log.s3" || true)
    echo "[$label] $total S3 requests, $wrong not $scheme, $bad with a bad signature"
    [[ $total -gt 0 && $wrong == 0 && $bad == 0 ]] || return 1
    [[ $(jq .s3_requests <<<"$stats") == $(jq .requests <<<"$stats") ]] || return 1
    for op in GetObject PutObject DeleteObject; do
        [[ $(jq ".ops.$op // 0" <<<"$stats") -gt 0 ]] || { echo "[$label] no $op reached the server" >&2; return 1; }
    done
    [[ $(jq '(.ops.ListObjects // 0) + (.ops.ListObjectsV2 // 0)' <<<"$stats") -gt 0 ]] || return 1
    [[ $(jq '(.ops.CopyObject // 0) + (.ops.UploadPartCopy // 0)' <<<"$stats") -gt 0 ]] || return 1
}

wait_mounted() {
    local m=$1
    for _ in $(seq 100); do
        if mountpoint -q "$m"; then return 0; fi
        sleep 0.1
    done
    echo "FAIL: $m did not mount" >&2
    return 1
}

# The benchmark's operations on one mount; $1 mount point, $2 label.
workload() {
    local m=$1 label=$2 d
    d="$m/smoke-$label"
    echo "[$label] mkdir + dd ${BIG_MIB} MiB"
    mkdir "$d"
    head -c $((BIG_MIB * 1024 * 1024)) /dev/urandom >"$work/big.src"
    dd if="$work/big.src" of="$d/big" bs=1M conv=fsync status=none
    echo "[$label] read back + cmp"
    sync
    cmp "$work/big.src" "$d/big"
    echo "[$label] random reads"
    local off
    for off in 0 4097 $((BIG_MIB * 1024 * 1024 - 5000)); do
        cmp <(dd if="$d/big" bs=1 skip="$off" count=4096 status=none iflag=skip_bytes,count_bytes) \
            <(dd if="$work/big.src" bs=1 skip="$off" count=4096 status=none iflag=skip_bytes,count_bytes)
    done
    echo "[$label] $SMALL_FILES small files"
    mkdir "$d/small"
    local i
    for i in $(seq "$SMALL_FILES"); do
        head -c 16384 /dev/urandom >"$d/small/f$i"
    done
    for i in 1 57 $SMALL_FILES; do
        [[ $(stat -c %s "$d/small/f$i") == 16384 ]]
    done
    echo "[$label] ls -l / find"
    [[ $(ls -l "$d/small" | grep -c '^-') == "$SMALL_FILES" ]]
    [[ $(find "$d" -type f | wc -l) == $((SMALL_FILES + 1)) ]]
    echo "[$label] mv"
    mv "$d/big" "$d/big.moved"
    [[ ! -e "$d/big" ]]
    cmp "$work/big.src" "$d/big.moved"
    mv "$d/small/f1" "$d/small/g1"
    [[ -f "$d/small/g1" && ! -e "$d/small/f1" ]]
    if [[ $label != rclone ]]; then
        echo "[$label] chmod"
        chmod 600 "$d/small/g1"
        [[ $(stat -c %a "$d/small/g1") == 600 ]]
    fi
    echo "[$label] rm -r"
    rm -r "$d"
    [[ ! -e "$d" ]]
    echo "[$label] ls -l / find over $MANY_FILES files"
    [[ $(ls -l "$m/many" | grep -c '^-') == "$MANY_FILES" ]]
    [[ $(find "$m/many" -type f | wc -l) == "$MANY_FILES" ]]
    [[ $(cat "$m/many/f00001") == x ]]
    echo "[$label] OK"
}

creds="$work/passwd"
echo "$ACCESS_KEY:$SECRET_KEY" >"$creds"
chmod 600 "$creds"

run_s3fs() {
    local label=$1 sigopt=$2 scheme=$3 m="$work/mnt-$1"
    start_server "$label"
    mkdir -p "$m"
    mounts+=("$m")
    s3fs "$BUCKET" "$m" -o "url=http://$addr,use_path_request_style,passwd_file=$creds,endpoint=$REGION,$sigopt" \
        -o dbglevel=warn -o logfile="$work/$label.log"
    wait_mounted "$m"
    workload "$m" "$label"
    fusermount3 -u "$m"
    stop_server "$label" "$scheme"
}

run_rclone() {
    local m="$work/mnt-rclone"
    start_server rclone
    mkdir -p "$m"
    mounts+=("$m")
    cat >"$work/rclone.conf" <<CONF
[osslocal]
type = s3
provider = Other
access_key_id = $ACCESS_KEY
secret_access_key = $SECRET_KEY
endpoint = http://$addr
force_path_style = true
region = $REGION
CONF
    env -u AWS_CA_BUNDLE rclone --config "$work/rclone.conf" mount "osslocal:$BUCKET" "$m" \
        --vfs-cache-mode off --dir-cache-time 1s --log-file "$work/rclone.log" --log-level NOTICE &
    peer_pid=$!
    wait_mounted "$m"
    workload "$m" rclone
    fusermount3 -u "$m"
    wait "$peer_pid" || true
    peer_pid=""
    stop_server rclone v4
}

status=0
run_s3fs s3fs-v4 sigv4 v4 || { echo "FAIL: s3fs (SigV4)" >&2; cat "$work/s3fs-v4.log" >&2 || true; status=1; }
run_s3fs s3fs-v2 sigv2 v2 || { echo "FAIL: s3fs (SigV2)" >&2; cat "$work/s3fs-v2.log" >&2 || true; status=1; }
run_rclone || { echo "FAIL: rclone" >&2; tail -50 "$work/rclone.log" >&2 || true; status=1; }
if [[ $status == 0 ]]; then echo "peers-smoke: all OK"; fi
exit $status
