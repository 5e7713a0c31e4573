// The stored form of a signing key: a CKO_DATA object whose value is
//   magic "M2SK" | version 1 | public key (33) | GCM IV (12) | ciphertext (32) + tag (16)
// The AES-GCM associated data binds the label and the public key, so a blob copied onto
// another label, or given another public key, fails authentication inside the token.
import { KeystoreError } from './errors.js';

const MAGIC = Buffer.from('M2SK', 'latin1');
const VERSION = 1;
export const PUBLIC_KEY_LEN = 33;
export const IV_LEN = 12;
export const SECRET_LEN = 32;
export const TAG_LEN = 16;
export const SEALED_LEN = SECRET_LEN + TAG_LEN;
const HEADER_LEN = MAGIC.length + 1;
export const BLOB_LEN = HEADER_LEN + PUBLIC_KEY_LEN + IV_LEN + SEALED_LEN;

/** CKA_APPLICATION of our key objects, so other data objects on a shared token are ignored. */
export const KEY_OBJECT_APPLICATION = 'musig2-signer/key/v1';
const AAD_DOMAIN = Buffer.from('musig2-signer/key-blob/v1\0', 'latin1');

export interface KeyBlob {
  readonly publicKey: Buffer;
  readonly iv: Buffer;
  readonly sealed: Buffer;
}

export function encodeBlob(blob: KeyBlob): Buffer {
  return Buffer.concat([MAGIC, Buffer.from([VERSION]), blob.publicKey, blob.iv, blob.sealed]);
}

export function decodeBlob(value: Uint8Array, label: string): KeyBlob {
  const buf = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (buf.length !== BLOB_LEN || !buf.subarray(0, MAGIC.length).equals(MAGIC) || buf[MAGIC.length] !== VERSION) {
    throw new KeystoreError('BLOB_MALFORMED', `key object "${label}" does not hold a version ${VERSION} key blob`);
  }
  let at = HEADER_LEN;
  const take = (n: number) => Buffer.from(buf.subarray(at, (at += n)));
  return { publicKey: take(PUBLIC_KEY_LEN), iv: take(IV_LEN), sealed: take(SEALED_LEN) };
}

/** domain | label length (1 byte) | label (UTF-8) | public key. */
export function blobAad(label: string, publicKey: Uint8Array): Buffer {
  const labelBytes = Buffer.from(label, 'utf8');
  if (labelBytes.length > 255) throw new RangeError('label too long for the blob AAD');
  return Buffer.concat([AAD_DOMAIN, Buffer.from([labelBytes.length]), labelBytes, publicKey]);
}
