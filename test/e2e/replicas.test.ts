// Two daemon replicas (real processes) sharing ONE PostgreSQL ledger and ONE SoftHSM token.
// The keys are imported before either daemon starts: two processes on one SoftHSM token dir
// do not reliably see each other's new objects (DESIGN.md), but both see what was there.
import { status as Status } from '@grpc/grpc-js';
import { schnorr } from '@noble/curves/secp256k1.js';
import { randomBytes } from '@noble/hashes/utils.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientError, runSession, SignerClient } from '../../src/client/index.js';
import { nonceAgg } from '../../src/musig2/index.js';
import { dbName, PgCluster } from '../ledger/pg-harness.js';
import { Daemon, hex, importKey, makeToken, removeToken } from './harness.js';
import type { Token } from './harness.js';

// Trust authentication ignores it, but the daemons get it in their URL: it must never show.
const PASSWORD = 'replica-secret-never-logged';

let cluster: PgCluster;
let db: string;
let token: Token;
let daemons: Daemon[] = [];
let a: SignerClient;
let b: SignerClient;
let pubkeys: Uint8Array[];

beforeAll(async () => {
  cluster = await PgCluster.start();
  db = dbName(await cluster.createDatabase('replicas'));
  token = await makeToken('musig2-replicas-');
  const alice = await importKey(token, 'alice', hex(randomBytes(32)));
  const bob = await importKey(token, 'bob', hex(randomBytes(32)));
  pubkeys = [alice, bob];
  // Started together: both migrate the same empty database at once (advisory lock).
  const ledger = cluster.url(db, PASSWORD);
  daemons = await Promise.all([Daemon.start(token, { ledger }), Daemon.start(token, { ledger })]);
  a = new SignerClient(daemons[0]!.address);
  b = new SignerClient(daemons[1]!.address);
});

afterAll(async () => {
  a?.close();
  b?.close();
  await Promise.all(daemons.map((d) => d.stop()));
  await removeToken(token);
  await cluster?.destroy();
});

async function ledgerRow(pubnonce: Uint8Array) {
  return cluster.sql<{ path: string; used_at: string | null; digest: Buffer | null; psig: Buffer | null }>(
    db,
    'SELECT path, used_at, digest, psig FROM nonces WHERE pubnonce = $1',
    [Buffer.from(pubnonce)],
  );
}

describe('two replicas, one PostgreSQL ledger', () => {
  it('round 2 on the replica that did not serve round 1 is NOT_FOUND, never a signature', async () => {
    const message = randomBytes(32);
    const r1 = await a.nonceGen({ keyId: 'alice', pubkeys });
    // The NonceGen row is in the shared ledger, visible to both replicas.
    expect(await ledgerRow(r1.pubnonce)).toMatchObject([{ path: 'random', used_at: null }]);
    const last = await a.deterministicSign({ keyId: 'bob', aggothernonce: r1.pubnonce, pubkeys, message });
    const signParams = { sessionId: r1.sessionId, aggnonce: nonceAgg([r1.pubnonce, last.pubnonce]), pubkeys, message };

    const wrong = await b.sign(signParams).catch((e: unknown) => e);
    expect(wrong).toBeInstanceOf(ClientError);
    expect((wrong as ClientError).code).toBe(Status.NOT_FOUND);
    // B signed nothing and marked nothing.
    expect(await ledgerRow(r1.pubnonce)).toMatchObject([{ used_at: null, psig: null }]);

    // The replica that served round 1 still completes it.
    const right = await a.sign(signParams);
    expect(right.partialSig).toHaveLength(32);
    const [row] = await ledgerRow(r1.pubnonce);
    expect(row?.used_at).not.toBeNull();
    expect(hex(row!.psig!)).toBe(hex(right.partialSig));
  });

  it('runSession pins round 2 to the replica of round 1', async () => {
    const message = randomBytes(32);
    // Endpoints, not shared clients: runSession makes one client per signer and uses it for
    // both rounds. Alice's rounds go to A, Bob's (deterministic, one round) to B.
    const result = await runSession({
      signers: [
        { keyId: 'alice', endpoint: daemons[0]!.address },
        { keyId: 'bob', endpoint: daemons[1]!.address },
      ],
      message,
    });
    expect(schnorr.verify(result.signature, message, result.aggregatePubkeyXonly)).toBe(true);
    expect(result.restarts).toBe(0);
  });

  it('DeterministicSign with identical inputs on both replicas: identical bytes, one ledger row', async () => {
    const message = randomBytes(32);
    const other = await a.nonceGen({ keyId: 'alice', pubkeys });
    const req = { keyId: 'bob', aggothernonce: other.pubnonce, pubkeys, message };
    const [ra, rb] = await Promise.all([a.deterministicSign(req), b.deterministicSign(req)]);
    expect(hex(ra.pubnonce)).toBe(hex(rb.pubnonce));
    expect(hex(ra.partialSig)).toBe(hex(rb.partialSig));
    const rows = await ledgerRow(ra.pubnonce);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ path: 'deterministic' });
    expect(hex(rows[0]!.psig!)).toBe(hex(ra.partialSig));
  });

  it('the same pubnonce with another recorded psig is refused on the other replica', async () => {
    const message = randomBytes(32);
    const other = await a.nonceGen({ keyId: 'alice', pubkeys });
    const req = { keyId: 'bob', aggothernonce: other.pubnonce, pubkeys, message };
    const first = await a.deterministicSign(req);
    // Honest inputs cannot make one deterministic nonce release two partial signatures (that
    // is what the ledger guards against), so simulate the broken case: rewrite the recorded
    // digest and psig directly in the database, as if this nonce had released another psig.
    await cluster.sql(db, 'UPDATE nonces SET digest = $2, psig = $3 WHERE pubnonce = $1', [
      Buffer.from(first.pubnonce),
      Buffer.from(randomBytes(32)),
      Buffer.from(randomBytes(32)),
    ]);
    const refused = await b.deterministicSign(req).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ClientError);
    expect((refused as ClientError).code).toBe(Status.FAILED_PRECONDITION);
    // And on A as well: the refusal comes from the shared ledger, not from a replica's memory.
    const alsoRefused = await a.deterministicSign(req).catch((e: unknown) => e);
    expect((alsoRefused as ClientError).code).toBe(Status.FAILED_PRECONDITION);
  });

  it('neither replica logs the ledger password', () => {
    for (const d of daemons) expect(d.lines.join('\n')).not.toContain(PASSWORD);
  });
});
