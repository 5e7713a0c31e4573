#!/usr/bin/env bash
# Builds the container image musig2-signer:dev from ./Dockerfile without a Docker engine:
# buildah (daemonless, --storage-driver vfs --isolation chroot, as root) on a Debian bookworm
# base made here by debootstrap --variant=minbase, with the build host's Node 20 copied in.
#
#   scripts/build-image.sh            # then: scripts/smoke-image.sh
#
# Environment:
#   IMAGE=musig2-signer:dev           tag of the result
#   BASE_IMAGE=...                    use this base instead of making one (must be bookworm with
#                                     Node 20 in /usr/local, e.g. docker.io/library/node:20-bookworm-slim)
#   MUSIG2_IMAGE_CACHE=.local/image   where the debootstrap rootfs is cached (reused when present)
#   DEBIAN_MIRROR=http://deb.debian.org/debian
#   REBUILD_BASE=1                    make the base image again even if it exists
#   BUILD_CA_FILE=FILE                CA bundle for npm's TLS inside the build (behind an
#                                     intercepting proxy); default: the host's npm cafile, if set.
#                                     Bind-mounted for RUN steps only, never stored in a layer.
#
# Needs root, and installs buildah and debootstrap with apt-get when they are missing. Buildah's
# storage is the default root one (/var/lib/containers/storage) with the vfs driver.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

log() { echo "build-image: $*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (buildah with vfs/chroot and debootstrap need it)"

IMAGE=${IMAGE:-musig2-signer:dev}
cache=${MUSIG2_IMAGE_CACHE:-$root/.local/image}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
export BUILDAH_ISOLATION=chroot
export STORAGE_DRIVER=vfs
bah() { buildah --storage-driver vfs "$@"; }

need=()
command -v buildah >/dev/null || need+=(buildah)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]} from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${need[@]}" \
    || { apt-get update && apt-get install -y --no-install-recommends "${need[@]}"; }
fi

start=$(date +%s)

if [ -z "${BASE_IMAGE:-}" ]; then
  node_bin=$(command -v node) || die "node is not installed on the build host"
  node_version=$("$node_bin" -v)
  case "$node_version" in v20.*) ;; *) die "the build host's node is $node_version; Node 20 is needed" ;; esac
  node_prefix=$(cd "$(dirname "$(readlink -f "$node_bin")")/.." && pwd)
  [ -d "$node_prefix/include/node" ] || die "no Node headers in $node_prefix/include/node (native modules need them)"
  npm_dir=$node_prefix/lib/node_modules/npm
  [ -f "$npm_dir/bin/npm-cli.js" ] || die "no npm in $npm_dir"
  BASE_IMAGE=localhost/musig2-base:bookworm-node${node_version#v}

  if [ "${REBUILD_BASE:-0}" = 1 ] || ! bah inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
    rootfs=$cache/rootfs-bookworm-minbase
    if [ ! -x "$rootfs/usr/bin/apt-get" ]; then
      log "debootstrap --variant=minbase bookworm into $rootfs"
      rm -rf "$rootfs.tmp"
      mkdir -p "$cache"
      debootstrap --variant=minbase bookworm "$rootfs.tmp" "$mirror"
      cat >"$rootfs.tmp/etc/apt/sources.list" <<SRC
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${mirror%/debian}/debian-security bookworm-security main
SRC
      chroot "$rootfs.tmp" apt-get clean
      rm -rf "$rootfs.tmp"/var/lib/apt/lists/* "$rootfs.tmp"/var/cache/apt/*.bin "$rootfs.tmp"/var/log/*.log
      mv "$rootfs.tmp" "$rootfs"
    else
      log "reusing $rootfs"
    fi
    log "making base image $BASE_IMAGE (rootfs + Node $node_version from $node_prefix)"
    ctr=$(bah from scratch)
    trap 'bah rm "$ctr" >/dev/null 2>&1 || true' EXIT
    mnt=$(bah mount "$ctr")
    cp -a "$rootfs/." "$mnt/"
    install -D -m 0755 "$node_bin" "$mnt/usr/local/bin/node"
    mkdir -p "$mnt/usr/local/include" "$mnt/usr/local/lib/node_modules"
    cp -a "$node_prefix/include/node" "$mnt/usr/local/include/"
    cp -a "$npm_dir" "$mnt/usr/local/lib/node_modules/"
    ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$mnt/usr/local/bin/npm"
    ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$mnt/usr/local/bin/npx"
    bah umount "$ctr" >/dev/null
    bah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      --env NODE_VERSION="${node_version#v}" --cmd '["node"]' \
      --label org.opencontainers.image.description="Debian bookworm minbase + Node $node_version" "$ctr"
    bah commit --rm "$ctr" "$BASE_IMAGE" >/dev/null
    trap - EXIT
    log "base image $BASE_IMAGE ready after $(( $(date +%s) - start ))s"
  else
    log "reusing base image $BASE_IMAGE"
  fi
fi

ca_args=()
ca=${BUILD_CA_FILE:-$(npm config get cafile 2>/dev/null || true)}
if [ -n "$ca" ] && [ "$ca" != null ] && [ "$ca" != undefined ] && [ -f "$ca" ]; then
  log "npm in the build trusts $ca (mounted at /run/build-ca.crt)"
  ca_args=(--volume "$(readlink -f "$ca"):/run/build-ca.crt:ro" --build-arg NPM_CONFIG_CAFILE=/run/build-ca.crt)
fi

log "buildah bud -t $IMAGE (BASE_IMAGE=$BASE_IMAGE)"
# --format docker: the OCI image format has no HEALTHCHECK field.
bah bud --isolation chroot --format docker --layers --force-rm "${ca_args[@]}" \
  --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$IMAGE" -f Dockerfile .
log "built $IMAGE in $(( $(date +%s) - start ))s"
