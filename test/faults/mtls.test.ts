// mTLS faults on a real daemon (127.0.0.1 only): a client certificate from another CA (with the
// very CN the access rules allow), an expired client certificate from the right CA, and no
// client certificate. Each fails the call (UNAVAILABLE: the handshake is refused), no nonce or
// signature comes back, and nothing reaches the audit log as allowed; a good client still signs.
import { randomBytes } from '@noble/hashes/utils.js';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientError, SignerClient } from '../../src/client/index.js';
import { nonceAgg } from '../../src/musig2/index.js';
import { contextDigest, deterministicDigest } from '../../src/signer/digest.js';
import { createKey, Daemon, makeToken, removeToken } from '../e2e/harness.js';
import type { Token } from '../e2e/harness.js';
import { makePki } from '../e2e/pki.js';
import type { Pki } from '../e2e/pki.js';
import { checkInvariants, readAuditLog, readSqliteLedger } from './invariants.js';
import type { Received } from './invariants.js';

const CN = 'coord';
let token: Token;
let daemon: Daemon | undefined;
let pki: Pki;
let wrongCa: Pki;
let expired: { cert: string; key: string };
let pubkeys: Uint8Array[];
let auditFile: string;

beforeAll(async () => {
  token = await makeToken('musig2-mtlsfault-');
  pki = makePki(token.dir, { [CN]: '' });
  mkdirSync(join(token.dir, 'other'));
  wrongCa = makePki(join(token.dir, 'other'), { [CN]: '' });
  // Same CA, same CN, but notAfter already passed.
  const f = (n: string) => join(token.dir, n);
  const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  writeFileSync(f('expired.ext'), 'extendedKeyUsage=clientAuth\n');
  openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', f('expired.key'), '-out', f('expired.csr'), '-subj', `/CN=${CN}`);
  openssl('x509', '-req', '-in', f('expired.csr'), '-CA', pki.ca, '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('expired.crt'), '-days', '-1', '-extfile', f('expired.ext'));
  expired = { cert: f('expired.crt'), key: f('expired.key') };

  pubkeys = [await createKey(token, 'alice'), await createKey(token, 'bob')];
  const acl = f('acl.json');
  writeFileSync(acl, JSON.stringify({ rules: [{ client: `CN=${CN}`, keys: ['*'], rpcs: ['*'] }] }));
  auditFile = f('audit.jsonl');
  daemon = await Daemon.start(token, {
    args: ['--tls-cert', pki.serverCert, '--tls-key', pki.serverKey, '--tls-client-ca', pki.ca, '--acl', acl, '--audit-log', auditFile, '--workers', '1'],
  });
});

afterAll(async () => {
  await daemon?.stop();
  await removeToken(token);
});

const read = (p: string) => readFileSync(p);
const clientWith = (ca: string, cert?: { cert: string; key: string }) =>
  new SignerClient(`localhost:${daemon!.port}`, {
    credentials: cert ? credentials.createSsl(read(ca), read(cert.key), read(cert.cert)) : credentials.createSsl(read(ca)),
    deadlineMs: 5000,
  });

describe('mTLS refusals', () => {
  it('wrong CA, expired certificate, no certificate: UNAVAILABLE, no signature, nothing audited as allowed', async () => {
    const good = clientWith(pki.ca, pki.clients[CN]);
    const received: Received[] = [];
    let goodSigned = 0;
    try {
      const r1 = await good.nonceGen({ keyId: 'alice', pubkeys });
      const message = randomBytes(32);
      const other = await good.deterministicSign({ keyId: 'bob', aggothernonce: r1.pubnonce, pubkeys, message });
      const aggnonce = nonceAgg([r1.pubnonce, other.pubnonce]);
      const s = await good.sign({ sessionId: r1.sessionId, aggnonce, pubkeys, message });
      goodSigned = 2;
      received.push(
        { pubnonce: other.pubnonce, psig: other.partialSig, digest: deterministicDigest(other.pubnonce, other.partialSig) },
        { pubnonce: s.pubnonce, psig: s.partialSig, digest: contextDigest({ path: 'random', keyId: 'alice', nonce: aggnonce, pubkeys, tweaks: [], message }), sessionId: r1.sessionId },
      );

      // The server certificate is from pki.ca: every bad client trusts it, only its own certificate is bad.
      const bad = {
        wrongCa: clientWith(pki.ca, wrongCa.clients[CN]),
        expired: clientWith(pki.ca, expired),
        none: clientWith(pki.ca),
      };
      for (const [name, c] of Object.entries(bad)) {
        try {
          // A small concurrent burst per client, a few rounds (each reconnects): bounded.
          for (let round = 0; round < 3; round++) {
            const calls = Array.from({ length: 8 }, (_, i) => {
              const m = randomBytes(32);
              if (i % 4 === 0) return c.listKeys();
              if (i % 4 === 1) return c.deterministicSign({ keyId: 'bob', aggothernonce: r1.pubnonce, pubkeys, message: m });
              if (i % 4 === 2) return c.sign({ sessionId: r1.sessionId, aggnonce, pubkeys, message });
              return c.nonceGen({ keyId: 'alice', pubkeys });
            });
            const results = await Promise.allSettled(calls);
            for (const r of results) {
              expect(r.status, `${name}: a call succeeded`).toBe('rejected');
              const err = (r as PromiseRejectedResult).reason as unknown;
              expect(err).toBeInstanceOf(ClientError);
              expect((err as ClientError).codeName, name).toBe('UNAVAILABLE');
            }
          }
        } finally {
          c.close();
        }
      }
      // The daemon is unharmed: the good client still works.
      expect((await good.listKeys()).map((k) => k.keyId).sort()).toEqual(['alice', 'bob']);
    } finally {
      good.close();
    }

    await daemon!.stop();
    daemon = undefined;
    const calls = (await readAuditLog(auditFile, token.env)).filter((r) => r.event === 'call');
    // Nothing but the good client ever got as far as a decision.
    expect([...new Set(calls.map((r) => r.client))]).toEqual([`CN=${CN}`]);
    expect(calls.filter((r) => r.outcome === 'ok').map((r) => r.rpc)).toEqual(['NonceGen', 'DeterministicSign', 'Sign', 'ListKeys']);
    const report = await checkInvariants({ rows: readSqliteLedger(join(token.dir, 'ledger.sqlite')), received, auditFiles: [auditFile], auditEnv: token.env });
    expect(report.violations).toEqual([]);
    expect(report.auditSigned).toBe(goodSigned);
    // Exactly two ledger rows: the good session and its deterministic co-signer.
    expect(report.rows).toBe(2);
  }, 120_000);
});
