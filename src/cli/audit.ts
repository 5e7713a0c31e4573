// `musig2-signer audit verify FILE [--ledger URL]`: checks an audit log's keyed chain in the
// token (the same PKCS#11 settings as serve) and, with --ledger, that the log reaches the head
// the ledger anchored. Exit 0 and "ok N records" when all holds; exit 1 naming what does not.
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { isUnkeyedLog, verifyAuditText, verifyKeyedText } from '../audit/index.js';
import type { AuditHead, KeyedRecord } from '../audit/index.js';
import { Keystore } from '../keystore/index.js';
import { describeLedger, openLedger } from '../ledger/index.js';
import { keystoreOptions, PKCS11_SETTINGS, settingOptions, settingsHelp } from './config.js';
import { CliError, wantsHelp } from './errors.js';

export function auditUsage(): string {
  return [
    'usage: musig2-signer audit verify FILE [--ledger URL] [--legacy-unkeyed]',
    '',
    '  Checks every record of an audit log: its mac under the token\'s audit key, its sequence',
    '  number and its link to the record before it. With --ledger (the URL serve uses), also',
    '  checks that the log reaches the head the ledger anchored for it: a log cut at the end',
    '  fails. Prints "ok N records" and the last mac, or names the first bad line and exits 1.',
    '  --legacy-unkeyed checks an old (v1) log of plain SHA-256 hashes, without the token; such',
    '  a chain can be rebuilt by anyone who can edit the file.',
    '',
    'settings (flag, else environment):',
    settingsHelp(PKCS11_SETTINGS),
  ].join('\n');
}

export async function runAudit(argv: string[]): Promise<number> {
  if (wantsHelp(argv)) {
    console.log(auditUsage());
    return 0;
  }
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: true,
      options: { ledger: { type: 'string' }, 'legacy-unkeyed': { type: 'boolean' }, ...settingOptions(PKCS11_SETTINGS) },
    });
  } catch (err) {
    throw new CliError(`${(err as Error).message}\n\n${auditUsage()}`, 2);
  }
  const [sub, file, ...rest] = parsed.positionals;
  if (sub !== 'verify' || file === undefined || rest.length > 0) throw new CliError(auditUsage(), 2);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new CliError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'read failed'}`, 1);
  }

  if (parsed.values['legacy-unkeyed'] === true) {
    const r = verifyAuditText(text);
    if (r.ok) {
      console.log(`ok ${r.records} unkeyed records${r.records > 0 ? ` (last seq ${r.last.seq}, hash ${r.last.hash})` : ''}; an unkeyed chain shows accidents, not forgery`);
      return 0;
    }
    console.log(`${file}: line ${r.line}: ${r.reason} (${r.records} records before it are intact)`);
    return 1;
  }
  if (isUnkeyedLog(text)) {
    console.log(
      `${file}: line 1: the record is not keyed (a plain SHA-256 hash, no mac): anyone who can edit the file can rebuild such a chain; ` +
        'an old (v1) log can be checked with --legacy-unkeyed',
    );
    return 1;
  }

  const keystore = await Keystore.open(keystoreOptions(parsed.values));
  let result;
  const macs = new Map<number, string>();
  try {
    if ((await keystore.ensureAuditKey(false)) === 'missing') {
      throw new CliError('the token has no audit MAC key: this log cannot be checked with it (the wrong token?)', 1);
    }
    // Remember each record's mac, to compare with the ledger's anchored head.
    result = await keystore.withAuditMac((mac) => verifyKeyedText(text, mac, (r: KeyedRecord) => macs.set(r.seq, r.mac)));
  } finally {
    await keystore.close();
  }
  if (!result.ok) {
    console.log(`${file}: line ${result.line}: ${result.reason} (${result.records} records before it are intact)`);
    return 1;
  }
  const head = result.head;
  const summary = head ? `ok ${result.records} records (chain ${head.chain}, last seq ${head.seq}, mac ${head.mac})` : 'ok 0 records';
  const url = parsed.values.ledger;
  if (url === undefined) {
    console.log(summary);
    return 0;
  }
  if (head === undefined) {
    console.log(`${summary}; an empty log has no chain to look up in the ledger`);
    return 0;
  }
  const anchor = await anchoredHead(url, head.chain);
  if (anchor === null) {
    console.log(`${file}: the ledger ${describeLedger(url)} has no anchor for chain ${head.chain} (another ledger, or a log the daemon never anchored)`);
    return 1;
  }
  const problem = compareWithAnchor(head, anchor, macs);
  if (problem !== undefined) {
    console.log(`${file}: ${problem}`);
    return 1;
  }
  console.log(`${summary}; the ledger's anchor (seq ${anchor.seq}) is in the log`);
  return 0;
}

async function anchoredHead(url: string, chain: string): Promise<{ seq: number; mac: string } | null> {
  const ledger = await openLedger(url).catch((err: unknown) => {
    throw new CliError(`cannot open the ledger ${describeLedger(url)}: ${(err as Error).message}`, 1);
  });
  try {
    return await ledger.auditHead(chain);
  } finally {
    await ledger.close();
  }
}

/** Why the log disagrees with the anchored head, or undefined when the head is in the log. */
function compareWithAnchor(head: AuditHead, anchor: { seq: number; mac: string }, macs: Map<number, string>): string | undefined {
  if (anchor.seq > head.seq) {
    return `the log ends at record ${head.seq}, but the ledger saw record ${anchor.seq} of chain ${head.chain} durable: ${anchor.seq - head.seq} record(s) were cut from the end`;
  }
  if (macs.get(anchor.seq) !== anchor.mac) {
    return `record ${anchor.seq} is not the one the ledger anchored (another mac): the log was rewritten from there on`;
  }
  return undefined;
}
