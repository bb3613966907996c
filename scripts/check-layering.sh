#!/usr/bin/env bash
# Imports point down the read path only: fuse -> fs -> cache -> prefetch -> client -> auth.
# Fails when a lower layer imports a higher one, or a FUSE reply type leaks out of fuse/.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
check() { # dir pattern message
  if grep -rnE "$2" "$1" 2>/dev/null; then echo "layering violation: $3" >&2; fail=1; fi
}
check src/client 'crate::(fs|fuse|cache|prefetch|mount)\b' "client/ must not import fs, fuse, cache, prefetch or mount"
check src/auth 'crate::(fs|fuse|cache|prefetch|mount|client)\b' "auth/ must not import fs, fuse, cache, prefetch, mount or client"
check src/prefetch 'crate::(fs|fuse|cache|mount)\b' "prefetch/ must not import fs, fuse, cache or mount"
check src/cache 'crate::(fs|fuse|mount)\b' "cache/ must not import fs, fuse or mount"
check src/fs 'crate::(fuse|mount)\b' "fs/ must not import fuse or mount"
for f in $(grep -rlE 'fuser::(Reply|Request)' src 2>/dev/null || true); do
  case "$f" in src/fuse/*) ;; *) echo "$f: fuser reply/request types belong in src/fuse/" >&2; fail=1;; esac
done
exit $fail
