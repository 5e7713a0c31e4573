#!/bin/bash
# Container entry point: runs `musig2-signer "$@"` (default: serve).
#
# With MUSIG2_DEMO_TOKEN=1 it first makes an evaluation SoftHSM2 token (once per volume) under
# MUSIG2_DEMO_TOKEN_DIR (default /var/lib/musig2/demo-token) with random SO and user PINs kept
# in private files there, and the keys named in MUSIG2_DEMO_KEYS (default "demo-1 demo-2
# demo-3"), then points MUSIG2_PKCS11_* at it. Nothing of the token is in the image itself.
# Without MUSIG2_DEMO_TOKEN the PKCS#11 settings come from the environment as given
# (MUSIG2_PKCS11_MODULE, MUSIG2_PKCS11_TOKEN, MUSIG2_PKCS11_PIN_FILE, ...).
set -euo pipefail

# No core dumps: a core of the daemon could hold a decrypted key or a secret nonce.
ulimit -c 0

cli=/app/bin/musig2-signer.js

if [ "${MUSIG2_DEMO_TOKEN:-0}" = 1 ]; then
  dir=${MUSIG2_DEMO_TOKEN_DIR:-/var/lib/musig2/demo-token}
  label=${MUSIG2_PKCS11_TOKEN:-musig2-demo}
  umask 077
  mkdir -p "$dir"
  for f in so-pin user-pin; do
    [ -s "$dir/$f" ] || od -An -N12 -tx1 /dev/urandom | tr -d ' \n' >"$dir/$f"
  done
  out=$(SOFTHSM_SO_PIN=$(cat "$dir/so-pin") SOFTHSM_USER_PIN=$(cat "$dir/user-pin") /app/softhsm/init-token.sh "$dir" "$label")
  SOFTHSM2_CONF=$(printf '%s\n' "$out" | sed -n 's/^SOFTHSM2_CONF=//p')
  MUSIG2_PKCS11_MODULE=$(printf '%s\n' "$out" | sed -n 's/^MUSIG2_PKCS11_MODULE=//p')
  export SOFTHSM2_CONF MUSIG2_PKCS11_MODULE
  export MUSIG2_PKCS11_TOKEN=$label MUSIG2_PKCS11_PIN_FILE=$dir/user-pin
  unset MUSIG2_PKCS11_PIN
  have=$(node "$cli" keys list --json | node -e \
    'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{for(const k of JSON.parse(s))console.log(k.label)})')
  for key in ${MUSIG2_DEMO_KEYS:-demo-1 demo-2 demo-3}; do
    if ! grep -qxF -- "$key" <<<"$have"; then
      node "$cli" keys create --label "$key" >&2
    fi
  done
  echo "musig2-entrypoint: demo token '$label' in $dir (evaluation only: SoftHSM2, keys on the volume)" >&2
fi

exec node "$cli" "$@"
