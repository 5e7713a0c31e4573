// Oversized identifiers against a real daemon with access rules and an audit log: a long
// key_id from a client the rules would deny is refused before the rules, the audit log or a
// log line see it, and another client is served meanwhile (before, the refusal quoted the id
// in a status trailer: 100 KB stalled every client for ~25 s, 1 MB did not finish in 120 s).
// A long session_id is refused the same way; the audit log's records stay small.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { status as Status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientError, SignerClient } from '../../src/client/index.js';
import { createKey, Daemon, makeToken, removeToken } from './harness.js';
import type { Token } from './harness.js';

let token: Token;
let daemon: Daemon;
let auditFile: string;
let pk1: Uint8Array;
const clients: SignerClient[] = [];

beforeAll(async () => {
  token = await makeToken('musig2-bounds-');
  pk1 = await createKey(token, 'k1');
  const acl = join(token.dir, 'acl.json');
  writeFileSync(acl, JSON.stringify({ rules: [{ client: 'local', keys: ['k*1', 'k1'], rpcs: ['ListKeys', 'NonceGen', 'DeterministicSign'] }] }));
  auditFile = join(token.dir, 'audit.jsonl');
  // A small PSBT cap, so the frame limit is the one the message caps derive (maxReceiveBytes).
  daemon = await Daemon.start(token, { args: ['--acl', acl, '--audit-log', auditFile, '--max-psbt-bytes', '16384'] });
});

afterAll(async () => {
  for (const c of clients) c.close();
  await daemon?.stop();
  await removeToken(token);
});

function client(): SignerClient {
  const c = new SignerClient(daemon.address, { deadlineMs: 60_000 });
  clients.push(c);
  return c;
}

async function failure(p: Promise<unknown>): Promise<ClientError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ClientError);
  return err as ClientError;
}

describe('oversized identifiers', () => {
  it('refuse an oversized key_id at once, while another client is served', async () => {
    const flood = client();
    const other = client();
    // 60 KB fits in a request frame and reaches the server's own check; 100 KB and 1 MB are
    // past the frame size the configured caps allow, and grpc-js refuses them undecoded.
    for (const [size, code] of [[60_000, Status.INVALID_ARGUMENT], [100_000, Status.RESOURCE_EXHAUSTED], [1_000_000, Status.RESOURCE_EXHAUSTED]] as const) {
      const keyId = 'x'.repeat(size);
      const refused = failure(flood.nonceGen({ keyId, pubkeys: [pk1] }));
      const det = failure(flood.deterministicSign({ keyId, aggothernonce: new Uint8Array(66), pubkeys: [pk1], message: new Uint8Array(32) }));
      expect((await other.listKeys()).map((k) => k.keyId)).toEqual(['k1']);
      for (const err of [await refused, await det]) {
        expect(err.code).toBe(code);
        if (code === Status.INVALID_ARGUMENT) expect(err.details).toBe(`key_id: must be at most 64 characters, got ${size}`);
      }
    }
    // A short id with characters no label has: refused by the same rule, without quoting it.
    const odd = await failure(flood.nonceGen({ keyId: 'k1 OR 1=1', pubkeys: [pk1] }));
    expect(odd.code).toBe(Status.INVALID_ARGUMENT);
    expect(odd.details).not.toContain('1=1');
  });

  it('refuse an oversized session_id before the rules look up its session', async () => {
    const err = await failure(
      client().sign({ sessionId: new Uint8Array(60_000), aggnonce: new Uint8Array(66), pubkeys: [pk1], message: new Uint8Array(32) }),
    );
    expect(err.code).toBe(Status.INVALID_ARGUMENT);
    expect(err.details).toBe('session_id: must be 32 bytes, got 60000');
  });

  it('still deny and audit a well-formed key_id no rule grants; every audit line stays small', async () => {
    const err = await failure(client().nonceGen({ keyId: `z${'9'.repeat(63)}`, pubkeys: [pk1] }));
    expect(err.code).toBe(Status.PERMISSION_DENIED);
    const lines = readFileSync(auditFile, 'utf8').split('\n').filter((l) => l !== '');
    const denied = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((r) => r.outcome === 'denied');
    expect(denied.map((r) => r.key_id)).toEqual([`z${'9'.repeat(63)}`]);
    for (const l of lines) expect(Buffer.byteLength(l)).toBeLessThan(2048);
  });
});
