#!/usr/bin/env bash
# Smoke test of the image built by scripts/build-image.sh, without a Docker engine: a buildah
# working container (vfs storage, chroot isolation, the host's network) runs the image's
# entrypoint as its non-root user with MUSIG2_DEMO_TOKEN=1, i.e. a fresh SoftHSM2 token made by
# softhsm/init-token.sh with keys k1 and k2 made by `musig2-signer keys create`, then
# `musig2-signer serve` on 127.0.0.1:PORT. From the host it then checks grpc.health.v1 (with
# `musig2-signer health`, the project's client), runs the image's own HEALTHCHECK command
# inside the container, and runs a full 2-of-2 signing session with `musig2-signer sign`,
# which verifies the BIP340 signature. Everything is stopped and removed at the end.
#
#   scripts/smoke-image.sh            # IMAGE=musig2-signer:dev PORT=(free port)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "smoke-image: $*" >&2; }
die() { log "FAIL: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (buildah with vfs/chroot)"
command -v buildah >/dev/null || die "buildah is missing: run scripts/build-image.sh first"
IMAGE=${IMAGE:-musig2-signer:dev}
export BUILDAH_ISOLATION=chroot STORAGE_DRIVER=vfs
bah() { buildah --storage-driver vfs "$@"; }
bah inspect --type image "$IMAGE" >/dev/null 2>&1 || die "no image $IMAGE: run scripts/build-image.sh first"
[ -d node_modules ] || node scripts/ensure-deps.mjs
cli=(node bin/musig2-signer.js)

PORT=${PORT:-$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')}
addr=127.0.0.1:$PORT
start=$(date +%s)
logfile=$(mktemp /tmp/musig2-smoke.XXXXXX.log)
ctr=""
daemon=""   # the `buildah run` process
init=""     # tini inside the container (PID 1 under a Docker engine); SIGTERM goes here

stop_daemon() {
  # buildah run does not forward signals: signal tini, which forwards to the daemon.
  if [ -n "$init" ] && kill -0 "$init" 2>/dev/null; then kill -TERM "$init" 2>/dev/null || true; fi
  for _ in $(seq 1 75); do kill -0 "$daemon" 2>/dev/null || return 0; sleep 0.2; done
  return 1
}

cleanup() {
  local rc=$?
  if [ -n "$daemon" ] && kill -0 "$daemon" 2>/dev/null; then
    stop_daemon || { [ -n "$init" ] && kill -KILL "$init" 2>/dev/null; kill -TERM "$daemon" 2>/dev/null; sleep 1; } || true
  fi
  [ -n "$ctr" ] && bah rm "$ctr" >/dev/null 2>&1 || true
  if [ $rc -ne 0 ]; then
    log "daemon output:"; sed 's/^/  | /' "$logfile" >&2 || true
  fi
  rm -f "$logfile"
  exit $rc
}
trap cleanup EXIT INT TERM

ctr=$(bah from --pull=never --name "musig2-smoke-$$" "$IMAGE")
log "container $ctr from $IMAGE; daemon on $addr"

# The image's user (USER musig2) and entrypoint, run the way `docker run` would run them.
user=$(bah inspect --type image --format '{{.Docker.Config.User}}' "$IMAGE")
[ -n "$user" ] && [ "${user%%:*}" != root ] && [ "${user%%:*}" != 0 ] || die "image user is '$user', expected non-root"
bah run --isolation chroot --network host --user "$user" "$ctr" -- sh -c 'test "$(id -u)" -ne 0' \
  || die "the container command runs as root"

buildah --storage-driver vfs run --isolation chroot --network host --user "$user" \
  --env MUSIG2_DEMO_TOKEN=1 --env MUSIG2_DEMO_KEYS="k1 k2" --env MUSIG2_LISTEN="$addr" \
  --env MUSIG2_WORKERS=1 --env MUSIG2_LOG_LEVEL=info --env TINI_SUBREAPER=1 \
  "$ctr" -- /usr/bin/tini -- /usr/local/bin/musig2-entrypoint serve >"$logfile" 2>&1 &
daemon=$!

log "waiting for SERVING"
ok=""
for _ in $(seq 1 120); do
  kill -0 "$daemon" 2>/dev/null || die "the daemon exited early"
  if "${cli[@]}" health --address "$addr" --timeout-ms 1000 >/dev/null 2>&1; then ok=1; break; fi
  sleep 0.5
done
[ -n "$ok" ] || die "no SERVING from $addr"
"${cli[@]}" health --address "$addr" >&2
log "host health check: SERVING after $(( $(date +%s) - start ))s"

# The process that listens must be the daemon, running as the image's non-root user.
pid=$(ss -ltnpH "sport = :$PORT" | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n1)
[ -n "$pid" ] || die "no process found listening on $addr"
uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")
log "listener pid $pid: uid $uid, $(tr '\0' ' ' <"/proc/$pid/cmdline")"
[ "$uid" != 0 ] || die "the daemon runs as root"
init=$(awk '/^PPid:/ {print $2}' "/proc/$pid/status")
[ "$(cat "/proc/$init/comm" 2>/dev/null)" = tini ] || die "the daemon's parent $init is not tini"

# The HEALTHCHECK command exactly as the image declares it, inside the container.
hc=$(bah inspect --type image "$IMAGE" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{
  const t=JSON.parse(s).Docker?.config?.Healthcheck?.Test ?? JSON.parse(s).Docker?.Config?.Healthcheck?.Test;
  console.log(JSON.stringify(t ?? null))})')
log "image HEALTHCHECK $hc"
mapfile -t hc_args < <(node -e 'const t=JSON.parse(process.argv[1]); if(!t || t[0]!=="CMD") process.exit(1); for (const a of t.slice(1)) console.log(a)' "$hc")
[ ${#hc_args[@]} -gt 0 ] || die "unexpected HEALTHCHECK $hc"
bah run --isolation chroot --network host --user "$user" --env MUSIG2_LISTEN="$addr" "$ctr" -- "${hc_args[@]}" >&2 \
  || die "the image's HEALTHCHECK failed"

message=$(printf 'musig2-signer container smoke test %s' "$(date -u +%FT%TZ)" | od -An -tx1 | tr -d ' \n')
log "signing session from the host: k1 + k2"
out=$("${cli[@]}" sign --signer "$addr/k1" --signer "$addr/k2" --message "$message")
printf '%s\n' "$out" | sed 's/^/  /' >&2
printf '%s\n' "$out" | grep -Eq '^signature +[0-9a-f]{128}$' || die "no signature printed"

# Graceful stop: SIGTERM to tini, which forwards it; serve drains and exits, then the run ends.
stop_daemon || die "the daemon did not stop within 15s of SIGTERM"
status=0; wait "$daemon" || status=$?
daemon=""
[ "$status" = 0 ] || die "the container exited with status $status after SIGTERM"
grep -q 'shutting down\|drain\|stopped' "$logfile" && log "daemon drained and stopped"
if "${cli[@]}" health --address "$addr" --timeout-ms 500 >/dev/null 2>&1; then die "something still serves on $addr"; fi
log "PASS in $(( $(date +%s) - start ))s"
