// The largest audit record a request can produce: a real daemon with access rules and an audit
// log over mTLS, driven with every kind of call (allowed, denied, malformed, oversized) by a
// client whose certificate has no CN and a 2,000-character URI SAN (so its name, capped at 256
// characters, is as long as a client name gets), with 64-character key ids. Prints the longest
// line in bytes. Run: `npx tsx bench/audit-size.ts` (not part of `npm run bench`).
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { AggregatorClient, SignerClient } from '../src/client/index.js';
import * as musig2 from '../src/musig2/index.js';
import { createKey, Daemon, makeToken, removeToken } from '../test/e2e/harness.js';
import { makePki } from '../test/e2e/pki.js';

const token = await makeToken('musig2-auditsize-');
const pki = makePki(token.dir, { plain: '' });
const f = (n: string) => join(token.dir, n);
const uri = `URI:spiffe://example.org/${'x'.repeat(2000)}`;
writeFileSync(f('long.ext'), `extendedKeyUsage=clientAuth\nsubjectAltName=${uri}\n`);
const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', f('long.key'), '-out', f('long.csr'), '-subj', '/O=no-common-name');
openssl('x509', '-req', '-in', f('long.csr'), '-CA', pki.ca, '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('long.crt'), '-days', '2', '-extfile', f('long.ext'));

const longKey = `k${'9'.repeat(63)}`;
const pk = await createKey(token, longKey);
const acl = f('acl.json');
writeFileSync(acl, JSON.stringify({ rules: [{ client: uri, keys: [longKey], rpcs: ['ListKeys', 'NonceGen', 'Sign', 'DeterministicSign'] }] }));
const auditFile = f('audit.jsonl');
const daemon = await Daemon.start(token, {
  listen: '127.0.0.1:0',
  args: ['--tls-cert', pki.serverCert, '--tls-key', pki.serverKey, '--tls-client-ca', pki.ca, '--acl', acl, '--audit-log', auditFile],
});
const creds = (key: string, cert: string) => credentials.createSsl(readFileSync(pki.ca), readFileSync(key), readFileSync(cert));
const target = `localhost:${daemon.port}`;
const long = new SignerClient(target, { credentials: creds(f('long.key'), f('long.crt')) });
const plain = new SignerClient(target, { credentials: creds(pki.clients.plain!.key, pki.clients.plain!.cert) });
const agg = new AggregatorClient(target, { credentials: creds(f('long.key'), f('long.crt')) });
const other = musig2.individualPubkey(new Uint8Array(32).fill(3));
const otherNonce = musig2.nonceGen({ pk: other, extraIn: Uint8Array.of(1) }).pubnonce;
const pubkeys = [pk, other];
const message = new Uint8Array(1 << 16).fill(7);
const settle = (p: Promise<unknown>) => p.then(() => 'ok', (e: Error) => e.message.slice(0, 60));
const outcomes: string[] = [];
for (const c of [long, plain]) {
  outcomes.push(await settle(c.listKeys()));
  const r1 = await c.nonceGen({ keyId: longKey, pubkeys, message, extraIn: new Uint8Array(1024) }).catch(() => undefined);
  outcomes.push(r1 ? 'ok' : 'refused');
  const aggnonce = musig2.nonceAgg([r1?.pubnonce ?? otherNonce, otherNonce]);
  outcomes.push(await settle(c.sign({ sessionId: r1?.sessionId ?? new Uint8Array(32), aggnonce, pubkeys, message })));
  outcomes.push(await settle(c.deterministicSign({ keyId: longKey, aggothernonce: otherNonce, pubkeys, message, rand: new Uint8Array(32) })));
  outcomes.push(await settle(c.nonceGen({ keyId: 'x'.repeat(60_000), pubkeys })));
  outcomes.push(await settle(c.nonceGen({ keyId: `z${'9'.repeat(63)}`, pubkeys })));
  outcomes.push(await settle(c.sign({ sessionId: new Uint8Array(60_000), aggnonce, pubkeys, message })));
  outcomes.push(await settle(c.deterministicSign({ keyId: longKey, aggothernonce: new Uint8Array(66), pubkeys, message })));
}
outcomes.push(await settle(agg.keySort(pubkeys)));
await daemon.stop();
const lines = readFileSync(auditFile, 'utf8').split('\n').filter((l) => l !== '');
const sizes = lines.map((l) => Buffer.byteLength(l) + 1);
const max = Math.max(...sizes);
const worst = JSON.parse(lines[sizes.indexOf(max)]!) as Record<string, unknown>;
console.log(`${lines.length} audit records; the largest is ${max} bytes with its newline (${String(worst.rpc ?? worst.event)} ${String(worst.outcome ?? '')})`);
console.log(`outcomes: ${outcomes.join(' | ')}`);
for (const c of [long, plain, agg]) c.close();
await removeToken(token);
