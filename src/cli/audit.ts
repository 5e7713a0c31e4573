// `musig2-signer audit verify FILE`: checks the hash chain of an audit log. Exit 0 and
// "ok N records" when every line is intact and in order; exit 1 naming the first bad line.
import { verifyAuditFile } from '../audit/index.js';
import { CliError, wantsHelp } from './errors.js';

export function auditUsage(): string {
  return [
    'usage: musig2-signer audit verify FILE',
    '',
    '  Checks every record of an audit log: its hash, its sequence number and its link to the',
    '  record before it. Prints "ok N records" (and the last hash, to compare with a copy kept',
    '  elsewhere), or names the first bad line and exits 1.',
  ].join('\n');
}

export async function runAudit(argv: string[]): Promise<number> {
  if (wantsHelp(argv)) {
    console.log(auditUsage());
    return 0;
  }
  const [sub, file, ...rest] = argv;
  if (sub !== 'verify' || file === undefined || rest.length > 0) throw new CliError(auditUsage(), 2);
  let result;
  try {
    result = await verifyAuditFile(file);
  } catch (err) {
    throw new CliError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'read failed'}`, 1);
  }
  if (result.ok) {
    console.log(`ok ${result.records} records${result.records > 0 ? ` (last seq ${result.last.seq}, hash ${result.last.hash})` : ''}`);
    return 0;
  }
  console.log(`${file}: line ${result.line}: ${result.reason} (${result.records} records before it are intact)`);
  return 1;
}
