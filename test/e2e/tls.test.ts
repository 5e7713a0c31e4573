// mTLS on a real daemon: certificates made with openssl for this test, the daemon listening on a
// non-loopback address (allowed because it is TLS), the sign CLI with a client certificate, and
// refusals for a plaintext client and a client without a certificate.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { credentials, status as Status } from '@grpc/grpc-js';
import { schnorr } from '@noble/curves/secp256k1.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientError, SignerClient } from '../../src/client/index.js';
import { createKey, Daemon, fromHex, makeToken, removeToken, runCli } from './harness.js';
import type { Token } from './harness.js';

let token: Token;
let daemon: Daemon;
let pki: Record<'ca' | 'serverCert' | 'serverKey' | 'clientCert' | 'clientKey', string>;

/** A throwaway CA, a server certificate for 127.0.0.1 and a client certificate, all P-256. */
function makePki(dir: string): typeof pki {
  const f = (name: string) => join(dir, name);
  const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  const ecKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl('req', '-x509', ...ecKey, '-keyout', f('ca.key'), '-out', f('ca.crt'), '-subj', '/CN=musig2-test-ca', '-days', '2');
  writeFileSync(f('server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  writeFileSync(f('client.ext'), 'extendedKeyUsage=clientAuth\n');
  for (const who of ['server', 'client']) {
    openssl('req', ...ecKey, '-keyout', f(`${who}.key`), '-out', f(`${who}.csr`), '-subj', `/CN=musig2-test-${who}`);
    openssl('x509', '-req', '-in', f(`${who}.csr`), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f(`${who}.crt`), '-days', '2', '-extfile', f(`${who}.ext`));
  }
  return {
    ca: f('ca.crt'),
    serverCert: f('server.crt'),
    serverKey: f('server.key'),
    clientCert: f('client.crt'),
    clientKey: f('client.key'),
  };
}

beforeAll(async () => {
  token = await makeToken();
  pki = makePki(token.dir);
  await createKey(token, 'k1');
  await createKey(token, 'k2');
  // Off loopback the daemon also needs access rules and an audit log (see acl-audit.test.ts).
  const acl = join(token.dir, 'acl.json');
  writeFileSync(acl, JSON.stringify({ rules: [{ client: 'CN=musig2-test-client', keys: ['*'], rpcs: ['*'] }] }));
  daemon = await Daemon.start(token, {
    // Every interface: allowed without --insecure because the transport is TLS.
    listen: '0.0.0.0:0',
    args: ['--tls-cert', pki.serverCert, '--tls-key', pki.serverKey, '--tls-client-ca', pki.ca, '--acl', acl, '--audit-log', join(token.dir, 'audit.jsonl')],
  });
});

afterAll(async () => {
  await daemon?.stop();
  await removeToken(token);
});

// A host name, not an IP: Node warns when TLS SNI would carry an IP address.
const local = () => `localhost:${daemon.port}`;

async function callError(client: SignerClient): Promise<ClientError> {
  try {
    const err = await client.listKeys().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ClientError);
    return err as ClientError;
  } finally {
    client.close();
  }
}

describe('mTLS', () => {
  it('serves a client with a certificate from the CA, and the sign command runs over it', async () => {
    const read = (p: string) => readFileSync(p);
    const client = new SignerClient(local(), {
      credentials: credentials.createSsl(read(pki.ca), read(pki.clientKey), read(pki.clientCert)),
    });
    try {
      expect((await client.listKeys()).map((k) => k.keyId).sort()).toEqual(['k1', 'k2']);
    } finally {
      client.close();
    }

    const message = '0123456789abcdef';
    const r = await runCli(
      ['sign', '--json', '--message', message, '--signer', `${local()}/k1`, '--signer', `${local()}/k2`, '--tls-ca', pki.ca, '--tls-cert', pki.clientCert, '--tls-key', pki.clientKey],
      { env: token.env },
    );
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout) as { signature: string; aggregate_pubkey_xonly: string };
    expect(schnorr.verify(fromHex(out.signature), fromHex(message), fromHex(out.aggregate_pubkey_xonly))).toBe(true);
  });

  it('refuses a client without a certificate', async () => {
    const err = await callError(new SignerClient(local(), { credentials: credentials.createSsl(readFileSync(pki.ca)), deadlineMs: 5000 }));
    expect(err.code).toBe(Status.UNAVAILABLE);
  });

  it('refuses a plaintext client', async () => {
    const err = await callError(new SignerClient(local(), { deadlineMs: 5000 }));
    expect(err.code).toBe(Status.UNAVAILABLE);
  });
});
