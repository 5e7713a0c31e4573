// Per-client quotas on a real daemon over mTLS, two client certificates: one client cannot hold
// every open-session slot (before, one identity could take all of them for the TTL and every
// other client got RESOURCE_EXHAUSTED); its refusal names its own cap, and the other client is
// still served.
import { readFileSync } from 'node:fs';
import { credentials, status as Status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientError, SignerClient } from '../../src/client/index.js';
import { createKey, Daemon, makeToken, removeToken } from './harness.js';
import type { Token } from './harness.js';
import { makePki } from './pki.js';
import type { Pki } from './pki.js';

let token: Token;
let daemon: Daemon;
let pki: Pki;
let pk: Uint8Array;
const clients: SignerClient[] = [];

beforeAll(async () => {
  token = await makeToken('musig2-quotas-');
  pki = makePki(token.dir, { 'coord-flood': '', 'coord-calm': '' });
  pk = await createKey(token, 'k1');
  daemon = await Daemon.start(token, {
    args: ['--tls-cert', pki.serverCert, '--tls-key', pki.serverKey, '--tls-client-ca', pki.ca, '--max-sessions', '8'],
  });
});

afterAll(async () => {
  for (const c of clients) c.close();
  await daemon?.stop();
  await removeToken(token);
});

function client(who: string): SignerClient {
  const c = pki.clients[who]!;
  const s = new SignerClient(`localhost:${daemon.port}`, {
    credentials: credentials.createSsl(readFileSync(pki.ca), readFileSync(c.key), readFileSync(c.cert)),
    deadlineMs: 30_000,
  });
  clients.push(s);
  return s;
}

describe('per-client quotas', () => {
  it('one client may hold a quarter of the open sessions; the others are still served', async () => {
    const flood = client('coord-flood');
    const calm = client('coord-calm');
    const outcomes = await Promise.allSettled(Array.from({ length: 8 }, () => flood.nonceGen({ keyId: 'k1', pubkeys: [pk] })));
    const ok = outcomes.filter((o) => o.status === 'fulfilled');
    expect(ok).toHaveLength(2); // max-sessions 8 / 4
    for (const o of outcomes.filter((x) => x.status === 'rejected')) {
      const err = (o as PromiseRejectedResult).reason as ClientError;
      expect(err.code).toBe(Status.RESOURCE_EXHAUSTED);
      expect(err.details).toMatch(/client 'CN=coord-flood' has too many open sessions \(cap 2 per client\)/);
    }
    const mine = await calm.nonceGen({ keyId: 'k1', pubkeys: [pk] });
    expect(mine.pubnonce).toHaveLength(66);
  });
});
