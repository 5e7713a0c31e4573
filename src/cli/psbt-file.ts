// PSBT files as wallets write them: binary (starting with the magic "psbt\xff") or base64 text.
import { readFileSync, writeFileSync } from 'node:fs';
import { CliError } from './errors.js';

const MAGIC = [0x70, 0x73, 0x62, 0x74, 0xff];
const hasMagic = (b: Uint8Array) => b.length >= 5 && MAGIC.every((m, i) => b[i] === m);

/** Reads a PSBT file, binary or base64; CliError when it is neither. */
export function readPsbtFile(path: string): Uint8Array {
  let raw: Buffer;
  try {
    raw = readFileSync(path);
  } catch (err) {
    throw new CliError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? 'read failed'}`);
  }
  if (hasMagic(raw)) return new Uint8Array(raw);
  const text = raw.toString('utf8').trim();
  if (/^[A-Za-z0-9+/]+={0,2}$/.test(text)) {
    const bytes = new Uint8Array(Buffer.from(text, 'base64'));
    if (hasMagic(bytes)) return bytes;
  }
  throw new CliError(`${path} is not a PSBT (neither binary nor base64)`);
}

/** Writes a PSBT file, base64 text (one line) unless `binary`. */
export function writePsbtFile(path: string, psbt: Uint8Array, binary: boolean): void {
  try {
    writeFileSync(path, binary ? psbt : `${Buffer.from(psbt).toString('base64')}\n`);
  } catch (err) {
    throw new CliError(`cannot write ${path}: ${(err as NodeJS.ErrnoException).code ?? 'write failed'}`);
  }
}
