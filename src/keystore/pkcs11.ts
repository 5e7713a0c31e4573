// The one place that imports pkcs11js (a CommonJS native addon) and classifies its errors.
import pkcs11js from 'pkcs11js';
import type { GcmParams, Mechanism, PKCS11, Template } from 'pkcs11js';

export { pkcs11js };
export type { GcmParams, Mechanism, PKCS11, Template };
export type Handle = Buffer;

/** The CKR_* name of a PKCS#11 error, or undefined for anything else. */
export function ckrName(err: unknown): string | undefined {
  if (err instanceof pkcs11js.Pkcs11Error) return err.message.startsWith('CKR_') ? err.message : `CKR_0x${err.code.toString(16)}`;
  return undefined;
}

export function ckrCode(err: unknown): number | undefined {
  return err instanceof pkcs11js.Pkcs11Error ? err.code : undefined;
}

export function hasCkr(err: unknown, ...codes: number[]): boolean {
  const code = ckrCode(err);
  return code !== undefined && codes.includes(code);
}

// Return values after which our sessions, handles or the library state can no longer be
// trusted: the remedy is to finalize, initialize, log in again and retry once.
// CKR_GENERAL_ERROR belongs here too: SoftHSM answers it when its token directory vanishes.
const CONNECTION_LOST = new Set<number>([
  pkcs11js.CKR_SESSION_HANDLE_INVALID,
  pkcs11js.CKR_SESSION_CLOSED,
  pkcs11js.CKR_CRYPTOKI_NOT_INITIALIZED,
  pkcs11js.CKR_DEVICE_REMOVED,
  pkcs11js.CKR_DEVICE_ERROR,
  pkcs11js.CKR_DEVICE_MEMORY,
  pkcs11js.CKR_TOKEN_NOT_PRESENT,
  pkcs11js.CKR_TOKEN_NOT_RECOGNIZED,
  pkcs11js.CKR_SLOT_ID_INVALID,
  pkcs11js.CKR_USER_NOT_LOGGED_IN,
  pkcs11js.CKR_OBJECT_HANDLE_INVALID,
  pkcs11js.CKR_KEY_HANDLE_INVALID,
  pkcs11js.CKR_GENERAL_ERROR,
  pkcs11js.CKR_FUNCTION_FAILED,
]);

export function isConnectionLost(err: unknown): boolean {
  const code = ckrCode(err);
  return code !== undefined && CONNECTION_LOST.has(code);
}

// What an AES-GCM tag mismatch looks like: SoftHSM says CKR_GENERAL_ERROR (measured), the
// standard says CKR_ENCRYPTED_DATA_INVALID, and PKCS#11 3.0 adds CKR_AEAD_DECRYPT_FAILED.
const CKR_AEAD_DECRYPT_FAILED = 0x35;
export function mayBeAuthFailure(err: unknown): boolean {
  return hasCkr(
    err,
    pkcs11js.CKR_GENERAL_ERROR,
    pkcs11js.CKR_ENCRYPTED_DATA_INVALID,
    pkcs11js.CKR_ENCRYPTED_DATA_LEN_RANGE,
    CKR_AEAD_DECRYPT_FAILED,
  );
}

/** PKCS#11 pads fixed-width strings (token labels) with spaces; pkcs11js may leave NULs. */
export function trimPadded(s: string): string {
  return s.replace(/[\s\0]+$/u, '');
}

/** A boolean attribute as returned by C_GetAttributeValue (one byte, CK_TRUE = 1). */
export function attrBool(value: Buffer | undefined): boolean | undefined {
  return value === undefined || value.length === 0 ? undefined : value[0] !== 0;
}

/** A CK_ULONG attribute in host byte order (little-endian on the machines we support). */
export function attrUlong(value: Buffer | undefined): number | undefined {
  if (value === undefined || value.length === 0) return undefined;
  return value.length >= 8 ? Number(value.readBigUInt64LE(0)) : value.readUInt32LE(0);
}
