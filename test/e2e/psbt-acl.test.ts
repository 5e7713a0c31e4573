// Access rules and the audit log on the PSBT RPCs (plaintext loopback, client `local`): a rule
// grants the PSBT RPCs per key, PsbtSign is checked against the key of its session (it carries
// no key id), and every decision is audited with the session id and the SHA-256 of the PSBT.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { status as Status } from '@grpc/grpc-js';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientError, SignerClient } from '../../src/client/index.js';
import { createKey, Daemon, makeToken, removeToken } from './harness.js';
import type { Token } from './harness.js';
import { buildFixture, hex } from './psbt-fixture.js';
import type { Fixture } from './psbt-fixture.js';

let token: Token;
let daemon: Daemon;
let client: SignerClient;
let auditFile: string;
let f: Fixture;

beforeAll(async () => {
  token = await makeToken('musig2-psbt-acl-');
  const allowed = await createKey(token, 'allowed');
  const other = await createKey(token, 'other');
  const acl = join(token.dir, 'acl.json');
  writeFileSync(
    acl,
    JSON.stringify({
      rules: [
        { client: 'local', keys: ['allowed'], rpcs: ['ListKeys', 'PsbtNonceGen', 'PsbtSign', 'PsbtDeterministicSign'] },
        { client: 'local', keys: ['other'], rpcs: ['PsbtNonceGen'] },
      ],
    }),
  );
  auditFile = join(token.dir, 'audit.jsonl');
  daemon = await Daemon.start(token, { args: ['--acl', acl, '--audit-log', auditFile] });
  client = new SignerClient(daemon.address);
  f = buildFixture([allowed, other, secp256k1.getPublicKey(secp256k1.utils.randomSecretKey(), true)], secp256k1.utils.randomSecretKey());
});

afterAll(async () => {
  client?.close();
  await daemon?.stop();
  await removeToken(token);
});

async function codeOf(p: Promise<unknown>): Promise<number> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  return err instanceof ClientError ? err.code : Status.OK;
}

const audit = () =>
  readFileSync(auditFile, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .map((r) => ({ ...r, ...((r.fields as Record<string, unknown> | undefined) ?? {}) }) as Record<string, unknown>);

describe('access rules on the PSBT RPCs', () => {
  it('grant per key; PsbtSign is checked on the session key; every decision is audited', async () => {
    const mine = await client.psbtNonceGen({ keyId: 'allowed', psbt: f.psbt });
    const theirs = await client.psbtNonceGen({ keyId: 'other', psbt: f.psbt });
    expect(await codeOf(client.psbtDeterministicSign({ keyId: 'other', psbt: f.psbt }))).toBe(Status.PERMISSION_DENIED);
    // The session of `other`: PsbtSign is not granted on that key.
    expect(await codeOf(client.psbtSign({ sessionId: theirs.sessionId, psbt: f.psbt }))).toBe(Status.PERMISSION_DENIED);
    // The session of `allowed` passes the rules and reaches the signer (which wants every nonce).
    expect(await codeOf(client.psbtSign({ sessionId: mine.sessionId, psbt: f.psbt }))).toBe(Status.INVALID_ARGUMENT);

    const records = audit();
    const psbtSha = hex(sha256(f.psbt));
    const find = (rpc: string, keyId: string, outcome: string) => records.find((r) => r.rpc === rpc && r.key_id === keyId && r.outcome === outcome);
    expect(find('PsbtNonceGen', 'allowed', 'ok')).toMatchObject({ session_id: hex(mine.sessionId), message_sha256: psbtSha });
    expect(find('PsbtSign', 'other', 'denied')).toMatchObject({ session_id: hex(theirs.sessionId), code: 'PERMISSION_DENIED' });
    expect(find('PsbtSign', 'allowed', 'error')).toMatchObject({ session_id: hex(mine.sessionId), code: 'INVALID_ARGUMENT' });
    expect(find('PsbtDeterministicSign', 'other', 'denied')).toBeDefined();
  });
});
