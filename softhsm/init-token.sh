#!/usr/bin/env bash
# Creates (or re-checks) a project-local SoftHSM2 token with its key-encryption key.
#
#   SOFTHSM_SO_PIN=... SOFTHSM_USER_PIN=... softhsm/init-token.sh DIR LABEL
#
# DIR gets its own softhsm2.conf and tokens/ folder. The token is initialised with LABEL and
# both PINs, and the AES-256 KEK and the audit MAC key are created inside it. Running it again
# changes nothing.
# PINs come from the environment so they never appear in a process listing. On success it
# prints, on stdout, the two variables a process needs to use the token:
#   SOFTHSM2_CONF=DIR/softhsm2.conf
#   MUSIG2_PKCS11_MODULE=/path/to/libsofthsm2.so
set -euo pipefail

die() { echo "init-token: $*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: SOFTHSM_SO_PIN=... SOFTHSM_USER_PIN=... $0 DIR LABEL"
dir=$1
label=$2
[ -n "${SOFTHSM_SO_PIN:-}" ] || die "SOFTHSM_SO_PIN is not set"
[ -n "${SOFTHSM_USER_PIN:-}" ] || die "SOFTHSM_USER_PIN is not set"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

find_module() {
  local m
  for m in /usr/lib/softhsm/libsofthsm2.so \
           /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
           /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so; do
    [ -e "$m" ] && { echo "$m"; return 0; }
  done
  return 1
}

# SoftHSM2 comes from Debian's softhsm2 package; install it when missing.
if ! module=$(find_module); then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "init-token: installing Debian package softhsm2" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends softhsm2 >&2 \
      || { apt-get update >&2 && apt-get install -y --no-install-recommends softhsm2 >&2; }
    module=$(find_module) || die "softhsm2 installed but libsofthsm2.so not found"
  else
    die "SoftHSM2 is missing: install the Debian package softhsm2 (apt-get install softhsm2) as root"
  fi
fi

# Checked before anything is created or chmod-ed.
dir=$(realpath -m -- "$dir")
case "$dir/" in
  /var/lib/softhsm/*) die "refusing to use the system-wide token directory under /var/lib/softhsm" ;;
esac
tokendir="$dir/tokens"
mkdir -p "$tokendir"
chmod 700 "$dir" "$tokendir"

# Write the config only when it differs, so a rerun leaves the file untouched.
conf="$dir/softhsm2.conf"
template=$(cat "$here/softhsm2.conf.in")
want=${template//@TOKENDIR@/$tokendir}
if [ ! -f "$conf" ] || [ "$(cat "$conf")" != "$want" ]; then
  printf '%s\n' "$want" >"$conf.tmp"
  mv "$conf.tmp" "$conf"
fi

# Token, user PIN, KEK and audit MAC key through PKCS#11 itself (idempotent; see src/keystore/softhsm-provision.ts).
export SOFTHSM2_CONF="$conf"
tsx="$root/node_modules/.bin/tsx"
[ -x "$tsx" ] || die "node_modules is missing: run npm ci first"
"$tsx" "$root/src/keystore/softhsm-provision.ts" "$module" "$label" >&2

echo "SOFTHSM2_CONF=$conf"
echo "MUSIG2_PKCS11_MODULE=$module"
