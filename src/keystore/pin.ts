// Resolves the user PIN from exactly one of: the value itself, or a file holding it.
import { readFile } from 'node:fs/promises';
import { KeystoreError, PinMissingError } from './errors.js';

export async function resolvePin(opts: { pin?: string; pinFile?: string }): Promise<string> {
  const hasPin = opts.pin !== undefined && opts.pin !== '';
  const hasFile = opts.pinFile !== undefined && opts.pinFile !== '';
  if (hasPin && hasFile) throw new KeystoreError('PIN_CONFLICT', 'give either a PIN or a PIN file, not both');
  if (hasPin) return opts.pin!;
  if (!hasFile) throw new PinMissingError();
  let text: string;
  try {
    text = await readFile(opts.pinFile!, 'utf8');
  } catch (err) {
    // The errno code names the cause; the path is the operator's own, never the content.
    const code = (err as NodeJS.ErrnoException).code ?? 'read failed';
    throw new KeystoreError('PIN_FILE', `cannot read PIN file ${opts.pinFile}: ${code}`);
  }
  // One trailing newline is what editors and `echo` add; it is not part of the PIN.
  const pin = text.replace(/\r?\n$/, '');
  if (pin === '') throw new PinMissingError(`PIN file ${opts.pinFile} is empty`);
  return pin;
}
