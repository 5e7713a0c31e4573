// Resolves the user PIN from exactly one of: the value itself, or a file holding it.
//
// A PIN file must be private, as ssh insists for keys: owned by the user the daemon runs as,
// with no permission for group or others. It is opened first and then checked through the
// open descriptor, so what is checked is what is read.
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { KeystoreError, PinMissingError } from './errors.js';

export async function resolvePin(opts: { pin?: string; pinFile?: string }): Promise<string> {
  const hasPin = opts.pin !== undefined && opts.pin !== '';
  const hasFile = opts.pinFile !== undefined && opts.pinFile !== '';
  if (hasPin && hasFile) throw new KeystoreError('PIN_CONFLICT', 'give either a PIN or a PIN file, not both');
  if (hasPin) return opts.pin!;
  if (!hasFile) throw new PinMissingError();
  const file = opts.pinFile!;
  let text: string;
  let fh: FileHandle | undefined;
  try {
    fh = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
    const st = await fh.stat();
    if (!st.isFile()) throw new KeystoreError('PIN_FILE', `PIN file ${file} is not a regular file`);
    const uid = process.getuid?.();
    if (uid !== undefined && st.uid !== uid) {
      throw new KeystoreError('PIN_FILE', `PIN file ${file} is owned by uid ${st.uid}, not by the daemon's user (uid ${uid}); refusing it`);
    }
    if ((st.mode & 0o077) !== 0) {
      throw new KeystoreError(
        'PIN_FILE',
        `PIN file ${file} is accessible by group or others (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}); run chmod 600 on it`,
      );
    }
    text = await fh.readFile('utf8');
  } catch (err) {
    if (err instanceof KeystoreError) throw err;
    // The errno code names the cause; the path is the operator's own, never the content.
    const code = (err as NodeJS.ErrnoException).code ?? 'read failed';
    throw new KeystoreError('PIN_FILE', `cannot read PIN file ${file}: ${code}`);
  } finally {
    await fh?.close();
  }
  // One trailing newline is what editors and `echo` add; it is not part of the PIN.
  const pin = text.replace(/\r?\n$/, '');
  if (pin === '') throw new PinMissingError(`PIN file ${file} is empty`);
  return pin;
}
