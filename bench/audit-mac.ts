// One-off measurement of what the keyed audit chain costs per record: the HMAC-SHA256 in the
// token (SoftHSM2) for one record alone and for records chained in one batch (one session lease),
// next to node:crypto's HMAC for scale, and a whole AuditLog append (MAC, write, fdatasync with
// group commit) under concurrency. Run: npx tsx bench/audit-mac.ts (its own token, in a temp dir).
import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuditLog, chainKeyedRecord, chainRecord, GENESIS_HASH, KEYED_GENESIS, newChainId } from '../src/audit/index.js';
import { auditKeyOf } from '../src/cli/serve.js';
import { initSoftHsmToken, Keystore } from '../src/keystore/index.js';

const dir = mkdtempSync(join(tmpdir(), 'bench-audit-mac-'));
try {
  const t = await initSoftHsmToken({ dir: join(dir, 'hsm'), label: 'bench-audit', soPin: 'bench-so', userPin: 'bench-user' });
  process.env.SOFTHSM2_CONF = t.conf;
  const ks = await Keystore.open({ modulePath: t.modulePath, tokenLabel: 'bench-audit', pin: 'bench-user' });
  const key = auditKeyOf(ks);
  await key.ensure(true);
  // A typical `call` record's fields.
  const fields = {
    client: 'CN=coordinator-a',
    peer: 'ipv4:10.0.0.7:53122',
    rpc: 'Sign',
    key_id: 'treasury-2026-q4',
    session_id: 'ab'.repeat(32),
    message_sha256: 'cd'.repeat(32),
    context_sha256: 'ef'.repeat(32),
    outcome: 'ok',
    code: 'OK',
  };
  const us = (ns: bigint, n: number) => (Number(ns) / 1000 / n).toFixed(1);
  const chain = (n: number, mac: (d: Uint8Array) => Buffer) => {
    let head = { chain: newChainId(), seq: 0, mac: KEYED_GENESIS };
    for (let i = 0; i < n; i++) head = chainKeyedRecord(head, new Date(), 'call', fields, mac);
  };
  await key.withMac((mac) => chain(100, mac)); // warm-up

  console.log('| what | µs per record |');
  console.log('|---|---|');
  for (const batch of [1, 10, 100]) {
    const rounds = Math.max(1, Math.floor(3000 / batch));
    const t0 = process.hrtime.bigint();
    for (let r = 0; r < rounds; r++) await key.withMac((mac) => chain(batch, mac));
    console.log(`| token HMAC, ${batch} record(s) per batch (one lease) | ${us(process.hrtime.bigint() - t0, rounds * batch)} |`);
  }
  const k = Buffer.alloc(32, 7);
  const t1 = process.hrtime.bigint();
  chain(3000, (d) => createHmac('sha256', k).update(d).digest());
  console.log(`| node:crypto HMAC (key in memory, for scale) | ${us(process.hrtime.bigint() - t1, 3000)} |`);
  const t3 = process.hrtime.bigint();
  let v1 = { seq: 0, hash: GENESIS_HASH };
  for (let i = 0; i < 3000; i++) v1 = chainRecord(v1, new Date(), 'call', fields);
  console.log(`| unkeyed SHA-256 chain (the v1 format, before) | ${us(process.hrtime.bigint() - t3, 3000)} |`);

  const log = await AuditLog.open(join(dir, 'audit.jsonl'), { key });
  const n = 3000;
  const t2 = process.hrtime.bigint();
  for (let i = 0; i < n; i += 50) await Promise.all(Array.from({ length: 50 }, () => log.append('call', fields)));
  console.log(`| AuditLog.append, 50 concurrent (MAC + write + fdatasync, group commit) | ${us(process.hrtime.bigint() - t2, n)} |`);
  await log.close();
  await ks.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
