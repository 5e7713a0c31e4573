// runSession against a dishonest signer: a real gRPC server whose signing service is the real
// SignerService (SoftHSM2 token, SQLite ledger) with its answers tampered with on the way out.
// The coordinator must name the culprit (index and contribution) for every kind of lie, and
// give up after one round-1 restart when a daemon keeps losing the session.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CulpritError, runSession, SessionError, SignerClient } from '../../src/client/index.js';
import type { SessionEvent, SessionSigner } from '../../src/client/index.js';
import type { Keystore } from '../../src/keystore/index.js';
import { openLedger } from '../../src/ledger/index.js';
import type { NonceLedger } from '../../src/ledger/index.js';
import { DaemonServer } from '../../src/server/index.js';
import { SignerError, SignerService } from '../../src/signer/index.js';
import { openTestKeystore, rand } from '../signer/helpers.js';

type Lie = 'none' | 'sign-psig' | 'det-psig' | 'offcurve-pubnonce' | 'short-pubnonce' | 'echo-pubnonce' | 'lose-session';

let dir: string;
let keystore: Keystore;
let ledger: NonceLedger;
let service: SignerService;
let honest: DaemonServer;
let dishonest: DaemonServer;
let honestClient: SignerClient;
let dishonestClient: SignerClient;
let lie: Lie = 'none';

const flipLastBit = (b: Uint8Array) => {
  const c = Uint8Array.from(b);
  c[c.length - 1]! ^= 1;
  return c;
};

beforeAll(async () => {
  const opened = await openTestKeystore('client-culprit-');
  dir = opened.dir;
  keystore = opened.keystore;
  for (const label of ['alice', 'mallory', 'dave']) await keystore.createKey(label);
  ledger = await openLedger(`sqlite:${join(dir, 'ledger.sqlite')}`);
  service = new SignerService({ keystore, ledger });
  const logger = pino({ level: 'silent' });

  honest = await DaemonServer.start({ signer: service, logger, listen: '127.0.0.1:0' });
  dishonest = await DaemonServer.start({
    logger,
    listen: '127.0.0.1:0',
    signer: {
      health: () => service.health(),
      listKeys: () => service.listKeys(),
      async nonceGen(req) {
        const r = await service.nonceGen(req);
        if (lie === 'offcurve-pubnonce') return { ...r, pubnonce: Uint8Array.from([0x02, ...new Uint8Array(32).fill(0xff), ...r.pubnonce.subarray(33)]) };
        if (lie === 'short-pubnonce') return { ...r, pubnonce: r.pubnonce.subarray(0, 65) };
        return r;
      },
      async sign(req) {
        if (lie === 'lose-session') throw new SignerError('NOT_FOUND', 'session_id: unknown session');
        const r = await service.sign(req);
        if (lie === 'sign-psig') return { ...r, partialSig: flipLastBit(r.partialSig) };
        if (lie === 'echo-pubnonce') return { ...r, pubnonce: flipLastBit(r.pubnonce) };
        return r;
      },
      async deterministicSign(req) {
        const r = await service.deterministicSign(req);
        return lie === 'det-psig' ? { ...r, partialSig: flipLastBit(r.partialSig) } : r;
      },
    },
  });
  honestClient = new SignerClient(honest.address);
  dishonestClient = new SignerClient(dishonest.address);
});

afterAll(async () => {
  honestClient?.close();
  dishonestClient?.close();
  await honest?.shutdown(1000);
  await dishonest?.shutdown(1000);
  await service?.close();
  await ledger?.close();
  await keystore?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** alice (honest, random), mallory (maybe lying, random), dave (deterministic, where given). */
function signers(daveOnDishonest: boolean): SessionSigner[] {
  return [
    { keyId: 'alice', client: honestClient },
    { keyId: 'mallory', client: dishonestClient },
    { keyId: 'dave', client: daveOnDishonest ? dishonestClient : honestClient },
  ];
}

async function culprit(daveOnDishonest = false): Promise<CulpritError> {
  const err = await runSession({ signers: signers(daveOnDishonest), message: rand(32) }).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CulpritError);
  return err as CulpritError;
}

describe('runSession names the culprit', () => {
  it('signs when nobody lies (the dishonest server relays the real service faithfully)', async () => {
    lie = 'none';
    const r = await runSession({ signers: signers(true), message: rand(32) });
    expect(r.signature).toHaveLength(64);
  });

  it('a random-nonce signer returning a bad partial signature', async () => {
    lie = 'sign-psig';
    expect(await culprit()).toMatchObject({ signerIndex: 1, contribution: 'psig' });
  });

  it('the deterministic signer returning a bad partial signature', async () => {
    lie = 'det-psig';
    expect(await culprit(true)).toMatchObject({ signerIndex: 2, contribution: 'psig' });
  });

  it('a public nonce that is not a point', async () => {
    lie = 'offcurve-pubnonce';
    expect(await culprit()).toMatchObject({ signerIndex: 1, contribution: 'pubnonce' });
  });

  it('a public nonce of the wrong length', async () => {
    lie = 'short-pubnonce';
    const err = await culprit();
    expect(err).toMatchObject({ signerIndex: 1, contribution: 'pubnonce' });
    expect(err.message).toContain('expected 66 bytes, got 65');
  });

  it('round 2 echoing a public nonce other than its round-1 one', async () => {
    lie = 'echo-pubnonce';
    expect(await culprit()).toMatchObject({ signerIndex: 1, contribution: 'pubnonce' });
  });
});

describe('runSession and lost sessions', () => {
  it('restarts round 1 once, then gives up naming the signer', async () => {
    lie = 'lose-session';
    const events: SessionEvent[] = [];
    const err = await runSession({ signers: signers(false), message: rand(32), onEvent: (e) => void events.push(e) }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(SessionError);
    expect((err as SessionError).signerIndex).toBe(1);
    expect((err as Error).message).toContain('lost the session again after a restart');
    expect(events.map((e) => e.kind)).toEqual(['round1', 'restart', 'round1']);
  });

  it('names the signer whose daemon lacks the key', async () => {
    lie = 'none';
    const err = await runSession({
      signers: [
        { keyId: 'alice', client: honestClient },
        { keyId: 'nobody', client: dishonestClient },
      ],
      message: rand(32),
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(SessionError);
    expect((err as SessionError).signerIndex).toBe(1);
  });
});
