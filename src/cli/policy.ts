// `musig2-signer policy hash FILE`: loads a signing-policy file as the daemon will and prints
// its hash (the policy_hash approvers sign and the daemon will report), or names the first bad
// field and exits 2. `--canonical` prints the exact text that is hashed.
// `musig2-signer policy check --policy FILE --psbt FILE [--key K]`: judges a transaction as the
// daemon would (the same summary and evaluation, src/signer/policy-gate.ts), without signing.
import { parseArgs } from 'node:util';
import { hexToBytes } from '@noble/hashes/utils.js';
import { describeLedger, openLedger } from '../ledger/index.js';
import { evaluate, loadPolicy, periodStart, PolicyError } from '../policy/index.js';
import type { Approval, Policy } from '../policy/index.js';
import { decodePsbt, planAll, PsbtError, unsignedTxid } from '../psbt/index.js';
import { SignerError, summarizePsbt } from '../signer/index.js';
import { CliError, wantsHelp } from './errors.js';
import { readPsbtFile } from './psbt-file.js';

export function policyUsage(): string {
  return [
    'usage: musig2-signer policy hash [--canonical] FILE',
    '       musig2-signer policy check --policy FILE --psbt FILE [--key K] [--ledger URL] [--approval PUBKEY:SIG]...',
    '',
    '  hash: checks a signing-policy file and prints its SHA-256 policy hash in hex. With --canonical,',
    '  prints the canonical text instead (its SHA-256 is the hash). A file that does not load',
    '  is named with the first bad field, and the exit status is 2.',
    '',
    '  check: judges the transaction in a PSBT (binary or base64) for key K (default: every key the',
    '  policy names) exactly as the daemon would, without signing: which rule allows it, or why each',
    '  rule refuses it. Velocity windows are read from --ledger (read only) when given; without it',
    '  nothing counts as spent. Approvals as hex x-only key and BIP340 signature. Exit status 0 when',
    '  every key checked would sign, 1 when one would refuse, 2 for a bad file or argument.',
  ].join('\n');
}

async function loadOrExit(file: string): Promise<Policy> {
  try {
    return await loadPolicy(file);
  } catch (err) {
    if (err instanceof PolicyError) throw new CliError(err.message, 2);
    throw err;
  }
}

function parseApproval(text: string): Approval {
  const m = /^([0-9a-fA-F]{64}):([0-9a-fA-F]{128})$/.exec(text);
  if (!m) throw new CliError(`--approval must be PUBKEY:SIGNATURE in hex (32 and 64 bytes), got '${text}'`, 2);
  return { pubkey: hexToBytes(m[1]!), signature: hexToBytes(m[2]!) };
}

async function runCheck(argv: string[]): Promise<number> {
  let values: { policy?: string; psbt?: string; key?: string; ledger?: string; approval?: string[] };
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: { policy: { type: 'string' }, psbt: { type: 'string' }, key: { type: 'string' }, ledger: { type: 'string' }, approval: { type: 'string', multiple: true } },
    }));
  } catch (err) {
    throw new CliError(`${(err as Error).message}\n\n${policyUsage()}`, 2);
  }
  if (!values.policy || !values.psbt) throw new CliError(policyUsage(), 2);
  const policy = await loadOrExit(values.policy);
  const approvals = (values.approval ?? []).map(parseApproval);
  const keyIds = values.key !== undefined ? [values.key] : [...policy.keys.keys()];
  let tx;
  let plan;
  try {
    tx = decodePsbt(readPsbtFile(values.psbt));
    plan = { unsignedTxid: unsignedTxid(tx), inputs: planAll(tx) };
  } catch (err) {
    if (err instanceof PsbtError) throw new CliError(`${values.psbt}: ${err.message}`, 2);
    throw err;
  }
  const ledger = values.ledger === undefined ? undefined : await openLedger(values.ledger);
  const now = Math.floor(Date.now() / 1000);
  console.log(`policy ${policy.hashHex}`);
  if (ledger) console.log(`velocity windows read from ${describeLedger(values.ledger!)}`);
  else console.log('no --ledger: velocity windows count as empty');
  let refused = false;
  try {
    for (const keyId of keyIds) {
      let summary;
      try {
        summary = summarizePsbt(policy.keys.get(keyId), tx, plan);
      } catch (err) {
        if (err instanceof SignerError) throw new CliError(err.message, 2);
        throw err;
      }
      const spent = new Map<string, bigint>();
      for (const rule of policy.keys.get(keyId)?.rules ?? []) {
        if (!rule.perPeriod) continue;
        const start = periodStart(now, rule.perPeriod.periodSeconds);
        spent.set(`${rule.name}@${start}`, ledger ? await ledger.spentInPeriod(keyId, rule.name, start, summary.request.unsignedTxid) : 0n);
      }
      const d = evaluate(policy, keyId, { ...summary.request, approvals, now, spentInPeriod: (rule, start) => spent.get(`${rule}@${start}`) ?? 0n });
      const change = summary.request.outputs.filter((o) => o.change).reduce((a, o) => a + o.amount, 0n);
      const facts = `sends ${summary.amountSent} sats, change ${change} sats, fee ${summary.request.fee} sats`;
      if (d.allowed) {
        console.log(`key ${keyId}: ALLOWED by rule '${d.rule}' (${facts})${d.charge ? `; charges ${d.charge.amount} of ${d.charge.limit} sats to '${d.charge.rule}'` : ''}`);
      } else {
        refused = true;
        console.log(`key ${keyId}: REFUSED ${d.reason}${d.rule ? ` (rule '${d.rule}')` : ''}: ${d.detail} (${facts})`);
        for (const f of d.failures) console.log(`  rule '${f.rule}': ${f.reason}: ${f.detail}`);
      }
    }
  } finally {
    await ledger?.close();
  }
  return refused ? 1 : 0;
}

export async function runPolicy(argv: string[]): Promise<number> {
  if (wantsHelp(argv)) {
    console.log(policyUsage());
    return 0;
  }
  const [sub, ...rest] = argv;
  if (sub === 'check') return runCheck(rest);
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
