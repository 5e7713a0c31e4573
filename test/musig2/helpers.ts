/** Shared helpers for the MuSig2 tests: hex conversion and loading the official vectors. */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const VECTOR_DIR = new URL('../../../shared/bip327-vectors/', import.meta.url);

export function hex(s: string): Uint8Array {
  return Uint8Array.from(Buffer.from(s, 'hex'));
}

export function toHexUpper(b: Uint8Array): string {
  return Buffer.from(b).toString('hex').toUpperCase();
}

/** Read one vector file from /work/shared/bip327-vectors. */
export function loadVectors<T = unknown>(name: string): T {
  return JSON.parse(readFileSync(fileURLToPath(new URL(name, VECTOR_DIR)), 'utf8')) as T;
}
