// `musig2-signer policy hash FILE`: loads a signing-policy file as the daemon will and prints
// its hash (the policy_hash approvers sign and the daemon will report), or names the first bad
// field and exits 2. `--canonical` prints the exact text that is hashed.
import { loadPolicy, PolicyError } from '../policy/index.js';
import { CliError, wantsHelp } from './errors.js';

export function policyUsage(): string {
  return [
    'usage: musig2-signer policy hash [--canonical] FILE',
    '',
    '  Checks a signing-policy file and prints its SHA-256 policy hash in hex. With --canonical,',
    '  prints the canonical text instead (its SHA-256 is the hash). A file that does not load',
    '  is named with the first bad field, and the exit status is 2.',
  ].join('\n');
}

export async function runPolicy(argv: string[]): Promise<number> {
  if (wantsHelp(argv)) {
    console.log(policyUsage());
    return 0;
  }
  const [sub, ...rest] = argv;
  const canonical = rest[0] === '--canonical';
  const files = canonical ? rest.slice(1) : rest;
  if (sub !== 'hash' || files.length !== 1 || files[0]!.startsWith('-')) throw new CliError(policyUsage(), 2);
  try {
    const policy = await loadPolicy(files[0]!);
    console.log(canonical ? policy.canonical : policy.hashHex);
    return 0;
  } catch (err) {
    if (err instanceof PolicyError) throw new CliError(err.message, 2);
    throw err;
  }
}
