#!/usr/bin/env bash
# Compares two commits of the daemon in alternating runs of bench/daemon-once.ts (this
# checkout's copy, so both are measured by the same harness): A, B, A, B, ... On a shared or
# virtual machine the absolute numbers drift from minute to minute; compare A and B within a
# round. Settings pass through to daemon-once.ts (BACKEND, WORKERS, IN_FLIGHT, SECONDS, OP).
#
#   bash bench/compare-commits.sh <commit-a> <commit-b> [rounds, default 3]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
a="$1"; b="$2"; rounds="${3:-3}"
work="$(mktemp -d /tmp/musig2-compare-XXXXXX)"
cleanup() {
  for d in "$work"/a "$work"/b; do [ -d "$d" ] && git -C "$here" worktree remove --force "$d" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT
[ -d "$here/node_modules" ] || (cd "$here" && node scripts/ensure-deps.mjs)
for side in a b; do
  commit="$a"; [ "$side" = b ] && commit="$b"
  git -C "$here" worktree add --detach "$work/$side" "$commit" >/dev/null
  ln -s "$here/node_modules" "$work/$side/node_modules"
  [ -d "$here/native/build" ] && [ -d "$work/$side/native" ] && ln -s "$here/native/build" "$work/$side/native/build"
  cp "$here/bench/daemon-once.ts" "$work/$side/bench/daemon-once.ts"
done
for r in $(seq "$rounds"); do
  for side in a b; do
    commit="$a"; [ "$side" = b ] && commit="$b"
    printf '%s %-12s ' "round $r" "$commit"
    (cd "$work/$side" && npx --no-install tsx bench/daemon-once.ts 2>/dev/null | tail -1)
  done
done
