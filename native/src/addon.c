/*
 * musig2_secp256k1: the few libsecp256k1 calls the MuSig2 core needs (src/musig2/native.ts).
 *
 * - Secret scalars (secret keys, nonces, the partial signature before it is checked) go only
 *   through libsecp256k1's constant-time functions: ec_pubkey_create (ecmult_gen, blinded by
 *   the randomized context) and ec_seckey_verify / _negate / _tweak_add / _tweak_mul. They are
 *   read from the caller's buffers in place; every local copy is wiped before returning.
 * - Public points go through the variable-time ones (ec_pubkey_parse, _tweak_mul, _tweak_add,
 *   _combine, _negate).
 * - A point crosses to JavaScript as 97 bytes: libsecp256k1's own 64-byte secp256k1_pubkey
 *   (so a cached key is never decompressed again) followed by its 33-byte compressed encoding.
 *   Only this addon makes such buffers; JavaScript keeps them private and never edits them.
 * - Every argument's type and length is checked here as well as in JavaScript.
 * - The only state is one randomized context per JavaScript environment (main thread or worker).
 */
#include <node_api.h>
#include <secp256k1.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/random.h>

#define PT_BYTES 97
#define RAW_BYTES 64
#define C_BYTES 33

typedef struct {
  secp256k1_context *ctx;
  int illegal; /* set by the illegal-argument callback instead of aborting the process */
} state_t;

/* The curve order n, big-endian. */
static const unsigned char ORDER[32] = {
  0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE,
  0xBA, 0xAE, 0xDC, 0xE6, 0xAF, 0x48, 0xA0, 0x3B, 0xBF, 0xD2, 0x5E, 0x8C, 0xD0, 0x36, 0x41, 0x41,
};

static void on_illegal(const char *msg, void *data) {
  (void)msg;
  ((state_t *)data)->illegal = 1;
}

/* Throws a TypeError and returns NULL (for `return fail(...)`). */
static napi_value fail(napi_env env, const char *msg) {
  napi_throw_type_error(env, NULL, msg);
  return NULL;
}

static napi_value null_value(napi_env env) {
  napi_value v;
  napi_get_null(env, &v);
  return v;
}

/*
 * The bytes of `v` if it is a Uint8Array of exactly `len` bytes; otherwise throws (naming
 * `what`) and returns NULL.
 */
static unsigned char *bytes_arg(napi_env env, napi_value v, size_t len, const char *what) {
  bool is_ta = false;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta) {
    fail(env, what);
    return NULL;
  }
  napi_typedarray_type type;
  size_t length;
  void *data;
  if (napi_get_typedarray_info(env, v, &type, &length, &data, NULL, NULL) != napi_ok ||
      type != napi_uint8_array || length != len || data == NULL) {
    fail(env, what);
    return NULL;
  }
  return (unsigned char *)data;
}

/* A fresh Uint8Array (its own ArrayBuffer) holding a copy of src. */
static napi_value new_bytes(napi_env env, const unsigned char *src, size_t len) {
  napi_value ab, ta;
  void *data;
  if (napi_create_arraybuffer(env, len, &data, &ab) != napi_ok) return NULL;
  memcpy(data, src, len);
  if (napi_create_typedarray(env, napi_uint8_array, len, ab, 0, &ta) != napi_ok) return NULL;
  return ta;
}

/* A point as JavaScript holds it: the 64-byte secp256k1_pubkey, then its compressed form. */
static napi_value new_point(napi_env env, state_t *st, const secp256k1_pubkey *pk) {
  unsigned char buf[PT_BYTES];
  size_t clen = C_BYTES;
  memcpy(buf, pk->data, RAW_BYTES);
  if (!secp256k1_ec_pubkey_serialize(st->ctx, buf + RAW_BYTES, &clen, pk, SECP256K1_EC_COMPRESSED) || clen != C_BYTES) {
    return fail(env, "point serialization failed");
  }
  return new_bytes(env, buf, PT_BYTES);
}

/* Reads a 97-byte point made by new_point. */
static int point_arg(napi_env env, napi_value v, secp256k1_pubkey *out, const char *what) {
  const unsigned char *p = bytes_arg(env, v, PT_BYTES, what);
  if (p == NULL) return 0;
  unsigned char any = 0;
  for (int i = 0; i < RAW_BYTES; i++) any |= p[i];
  if (any == 0) {
    fail(env, what);
    return 0;
  }
  memcpy(out->data, p, RAW_BYTES);
  return 1;
}

static int is_zero32(const unsigned char *s) {
  unsigned char any = 0;
  for (int i = 0; i < 32; i++) any |= s[i];
  return any == 0;
}

static int is_one32(const unsigned char *s) {
  unsigned char any = 0;
  for (int i = 0; i < 31; i++) any |= s[i];
  return any == 0 && s[31] == 1;
}

/*
 * out = h mod n for a 32-byte h, in constant time: h - n is computed with its borrow and kept
 * only when there was none (h >= n). One subtraction is enough, as 2^256 < 2n.
 */
static void reduce_mod_n(unsigned char *out, const unsigned char *h) {
  unsigned char diff[32];
  unsigned int borrow = 0;
  for (int i = 31; i >= 0; i--) {
    unsigned int d = (unsigned int)h[i] - ORDER[i] - borrow;
    diff[i] = (unsigned char)d;
    borrow = (d >> 8) & 1;
  }
  unsigned char keep_diff = (unsigned char)(borrow - 1); /* 0xFF when h >= n, else 0 */
  for (int i = 0; i < 32; i++) out[i] = (unsigned char)((diff[i] & keep_diff) | (h[i] & (unsigned char)~keep_diff));
  explicit_bzero(diff, sizeof diff);
}

static state_t *get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  void *data;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, &data) != napi_ok) return NULL;
  if (argc != want) {
    fail(env, "wrong number of arguments");
    return NULL;
  }
  state_t *st = (state_t *)data;
  st->illegal = 0;
  return st;
}

/* pubkeyCreate(sk: 32 bytes): sk·G (constant time), or null unless 0 < sk < n. */
static napi_value pubkey_create(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  state_t *st = get_args(env, info, 1, argv);
  if (st == NULL) return NULL;
  const unsigned char *sk = bytes_arg(env, argv[0], 32, "sk must be 32 bytes");
  if (sk == NULL) return NULL;
  secp256k1_pubkey pk;
  if (!secp256k1_ec_pubkey_create(st->ctx, &pk, sk)) return null_value(env);
  return new_point(env, st, &pk);
}

/* seckeyVerify(k: 32 bytes): whether 0 < k < n (constant time). */
static napi_value seckey_verify(napi_env env, napi_callback_info info) {
  napi_value argv[1], out;
  state_t *st = get_args(env, info, 1, argv);
  if (st == NULL) return NULL;
  const unsigned char *k = bytes_arg(env, argv[0], 32, "scalar must be 32 bytes");
  if (k == NULL) return NULL;
  napi_get_boolean(env, secp256k1_ec_seckey_verify(st->ctx, k) == 1, &out);
  return out;
}

/* parse(c: 33 bytes): the point, or null if c is not a compressed point (BIP327 cpoint). */
static napi_value parse(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  state_t *st = get_args(env, info, 1, argv);
  if (st == NULL) return NULL;
  const unsigned char *c = bytes_arg(env, argv[0], C_BYTES, "point must be 33 bytes");
  if (c == NULL) return NULL;
  if (c[0] != 2 && c[0] != 3) return null_value(env); /* parse would also take 65-byte forms */
  secp256k1_pubkey pk;
  if (!secp256k1_ec_pubkey_parse(st->ctx, &pk, c, C_BYTES)) return null_value(env);
  return new_point(env, st, &pk);
}

/* negate(P): −P. */
static napi_value negate(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  state_t *st = get_args(env, info, 1, argv);
  if (st == NULL) return NULL;
  secp256k1_pubkey pk;
  if (!point_arg(env, argv[0], &pk, "point must be 97 bytes")) return NULL;
  if (!secp256k1_ec_pubkey_negate(st->ctx, &pk) || st->illegal) return fail(env, "invalid point");
  return new_point(env, st, &pk);
}

#define MAX_TERMS 64

/*
 * mulAdd(points: P[], scalars: Uint8Array[32][], g: 32 bytes | null): Σ scalars[i]·points[i]
 * + g·G, or null for infinity. Public data only (variable time). Scalars must be < n; a zero
 * scalar drops its term and a one skips the multiplication.
 */
static napi_value mul_add(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  state_t *st = get_args(env, info, 3, argv);
  if (st == NULL) return NULL;
  uint32_t np = 0, ns = 0;
  bool is_arr = false;
  if (napi_is_array(env, argv[0], &is_arr) != napi_ok || !is_arr) return fail(env, "points must be an array");
  if (napi_is_array(env, argv[1], &is_arr) != napi_ok || !is_arr) return fail(env, "scalars must be an array");
  napi_get_array_length(env, argv[0], &np);
  napi_get_array_length(env, argv[1], &ns);
  if (np != ns || np > MAX_TERMS) return fail(env, "points and scalars must have the same length (at most 64)");
  napi_valuetype gt;
  napi_typeof(env, argv[2], &gt);
  const unsigned char *g = NULL;
  if (gt != napi_null) {
    g = bytes_arg(env, argv[2], 32, "g must be 32 bytes or null");
    if (g == NULL) return NULL;
  }
  secp256k1_pubkey terms[MAX_TERMS];
  const secp256k1_pubkey *ptrs[MAX_TERMS];
  size_t n = 0;
  for (uint32_t i = 0; i < np; i++) {
    napi_value pv, sv;
    napi_get_element(env, argv[0], i, &pv);
    napi_get_element(env, argv[1], i, &sv);
    const unsigned char *s = bytes_arg(env, sv, 32, "each scalar must be 32 bytes");
    if (s == NULL) return NULL;
    if (!point_arg(env, pv, &terms[n], "each point must be 97 bytes")) return NULL;
    if (is_zero32(s)) continue;
    if (!is_one32(s) && !secp256k1_ec_pubkey_tweak_mul(st->ctx, &terms[n], s)) return fail(env, "scalar out of range");
    ptrs[n] = &terms[n];
    n++;
  }
  secp256k1_pubkey sum;
  int have = 0; /* 0: the sum so far is infinity */
  if (n == 1) {
    sum = terms[0];
    have = 1;
  } else if (n > 1) {
    have = secp256k1_ec_pubkey_combine(st->ctx, &sum, ptrs, n); /* 0 only for infinity */
  }
  if (st->illegal) return fail(env, "invalid point");
  if (g != NULL && !is_zero32(g)) {
    if (have) {
      have = secp256k1_ec_pubkey_tweak_add(st->ctx, &sum, g); /* 0: infinity (g was checked < n in JS) */
    } else {
      have = secp256k1_ec_pubkey_create(st->ctx, &sum, g);
      if (!have) return fail(env, "scalar out of range");
    }
  }
  if (st->illegal) return fail(env, "invalid point");
  return have ? new_point(env, st, &sum) : null_value(env);
}

/*
 * nonces(h1: 32, h2: 32, k: 64-byte output): k1 = h1 mod n and k2 = h2 mod n are written to
 * k[0..32) and k[32..64), and [k1·G, k2·G] returned (constant time); null if either is zero.
 */
static napi_value nonces(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  state_t *st = get_args(env, info, 3, argv);
  if (st == NULL) return NULL;
  const unsigned char *h1 = bytes_arg(env, argv[0], 32, "h1 must be 32 bytes");
  if (h1 == NULL) return NULL;
  const unsigned char *h2 = bytes_arg(env, argv[1], 32, "h2 must be 32 bytes");
  if (h2 == NULL) return NULL;
  unsigned char *k = bytes_arg(env, argv[2], 64, "k must be 64 bytes");
  if (k == NULL) return NULL;
  reduce_mod_n(k, h1);
  reduce_mod_n(k + 32, h2);
  secp256k1_pubkey r1, r2;
  int ok = secp256k1_ec_pubkey_create(st->ctx, &r1, k);
  ok &= secp256k1_ec_pubkey_create(st->ctx, &r2, k + 32);
  if (!ok) return null_value(env);
  napi_value out, p1, p2;
  if ((p1 = new_point(env, st, &r1)) == NULL || (p2 = new_point(env, st, &r2)) == NULL) return NULL;
  napi_create_array_with_length(env, 2, &out);
  napi_set_element(env, out, 0, p1);
  napi_set_element(env, out, 1, p2);
  return out;
}

/*
 * signScalar(k: 64 = k1'||k2', d: 32, b: 32, negate: boolean, f: 32, wantT: boolean):
 * with t = k1' + b·k2', returns [s, T] where s = (negate ? −t : t) + f·d and T = t·G (or null
 * unless wantT). All of it with libsecp256k1's constant-time scalar functions. Returns null if
 * an input is out of range or an intermediate is zero (probability about 2^-256 for honest
 * inputs), and the caller computes the same values another way.
 */
static napi_value sign_scalar(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  state_t *st = get_args(env, info, 6, argv);
  if (st == NULL) return NULL;
  const unsigned char *k = bytes_arg(env, argv[0], 64, "k must be 64 bytes");
  if (k == NULL) return NULL;
  const unsigned char *d = bytes_arg(env, argv[1], 32, "d must be 32 bytes");
  if (d == NULL) return NULL;
  const unsigned char *b = bytes_arg(env, argv[2], 32, "b must be 32 bytes");
  if (b == NULL) return NULL;
  bool neg = false, want_t = false;
  if (napi_get_value_bool(env, argv[3], &neg) != napi_ok) return fail(env, "negate must be a boolean");
  const unsigned char *f = bytes_arg(env, argv[4], 32, "f must be 32 bytes");
  if (f == NULL) return NULL;
  if (napi_get_value_bool(env, argv[5], &want_t) != napi_ok) return fail(env, "wantT must be a boolean");

  unsigned char t[32], u[32];
  secp256k1_pubkey T;
  memcpy(t, k + 32, 32);
  memcpy(u, d, 32);
  int ok = secp256k1_ec_seckey_tweak_mul(st->ctx, t, b); /* b·k2' */
  ok = ok && secp256k1_ec_seckey_tweak_add(st->ctx, t, k); /* k1' + b·k2' */
  if (ok && want_t) ok = secp256k1_ec_pubkey_create(st->ctx, &T, t);
  if (ok && neg) ok = secp256k1_ec_seckey_negate(st->ctx, t);
  ok = ok && secp256k1_ec_seckey_tweak_mul(st->ctx, u, f); /* f·d */
  ok = ok && secp256k1_ec_seckey_tweak_add(st->ctx, t, u); /* s */
  explicit_bzero(u, sizeof u);
  napi_value out = NULL;
  if (!ok || st->illegal) {
    explicit_bzero(t, sizeof t);
    return null_value(env);
  }
  napi_value s = new_bytes(env, t, 32);
  explicit_bzero(t, sizeof t);
  if (s == NULL) return NULL;
  napi_value tv = want_t ? new_point(env, st, &T) : null_value(env);
  if (tv == NULL) return NULL;
  napi_create_array_with_length(env, 2, &out);
  napi_set_element(env, out, 0, s);
  napi_set_element(env, out, 1, tv);
  return out;
}

static void destroy_state(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  state_t *st = (state_t *)data;
  if (st->ctx != NULL) secp256k1_context_destroy(st->ctx);
  free(st);
}

NAPI_MODULE_INIT() {
  state_t *st = calloc(1, sizeof *st);
  if (st == NULL) return fail(env, "out of memory");
  st->ctx = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
  unsigned char seed[32];
  if (st->ctx == NULL || getrandom(seed, sizeof seed, 0) != (ssize_t)sizeof seed ||
      !secp256k1_context_randomize(st->ctx, seed)) {
    explicit_bzero(seed, sizeof seed);
    if (st->ctx != NULL) secp256k1_context_destroy(st->ctx);
    free(st);
    return fail(env, "libsecp256k1 context could not be created and randomized");
  }
  explicit_bzero(seed, sizeof seed);
  secp256k1_context_set_illegal_callback(st->ctx, on_illegal, st);
  if (napi_set_instance_data(env, st, destroy_state, NULL) != napi_ok) {
    secp256k1_context_destroy(st->ctx);
    free(st);
    return fail(env, "instance data");
  }
  static const struct {
    const char *name;
    napi_callback cb;
  } fns[] = {
    {"pubkeyCreate", pubkey_create}, {"seckeyVerify", seckey_verify}, {"parse", parse},
    {"negate", negate}, {"mulAdd", mul_add}, {"nonces", nonces}, {"signScalar", sign_scalar},
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value fn;
    if (napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].cb, st, &fn) != napi_ok ||
        napi_set_named_property(env, exports, fns[i].name, fn) != napi_ok) {
      return NULL;
    }
  }
  napi_value version;
  napi_create_uint32(env, 1, &version);
  napi_set_named_property(env, exports, "abiVersion", version);
  return exports;
}
