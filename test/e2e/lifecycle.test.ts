// Daemon lifecycle over real processes: nonce safety across kill -9 between rounds (a Sign is
// refused; runSession restarts round 1 once and still signs), SIGTERM draining in-flight calls
// and wiping sessions, and the refusal of plaintext on non-loopback addresses.
import { status as Status } from '@grpc/grpc-js';
import { schnorr } from '@noble/curves/secp256k1.js';
import { randomBytes } from '@noble/hashes/utils.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientError, runSession, SignerClient } from '../../src/client/index.js';
import type { SessionEvent } from '../../src/client/index.js';
import { nonceAgg } from '../../src/musig2/index.js';
import { createKey, Daemon, makeToken, removeToken, runCli } from './harness.js';
import type { Token } from './harness.js';

let tokens: Token[] = [];
const running = new Set<Daemon>();

async function start(token: Token, listen?: string): Promise<Daemon> {
  const d = await Daemon.start(token, listen ? { listen } : {});
  running.add(d);
  return d;
}

async function kill9(d: Daemon): Promise<void> {
  const { signal } = await d.stop('SIGKILL');
  expect(signal).toBe('SIGKILL');
  running.delete(d);
}

beforeAll(async () => {
  tokens = await Promise.all([makeToken(), makeToken()]);
  await Promise.all([
    (async () => {
      await createKey(tokens[0]!, 'random-1');
      await createKey(tokens[0]!, 'det-1');
    })(),
    createKey(tokens[1]!, 'det-2'),
  ]);
});

afterAll(async () => {
  await Promise.all([...running].map((d) => d.stop()));
  await Promise.all(tokens.map(removeToken));
});

describe('kill -9 between rounds', () => {
  it('a Sign after the restart is refused with NOT_FOUND, and the daemon then signs new sessions', async () => {
    const first = await start(tokens[0]!);
    const client = new SignerClient(first.address);
    try {
      const keys = await client.listKeys();
      const pk = (id: string) => keys.find((k) => k.keyId === id)!.publicKey;
      const pubkeys = [pk('random-1'), pk('det-1')];
      const message = randomBytes(32);

      const round1 = await client.nonceGen({ keyId: 'random-1', pubkeys, message });
      const last = await client.deterministicSign({ keyId: 'det-1', aggothernonce: nonceAgg([round1.pubnonce]), pubkeys, message });
      const aggnonce = nonceAgg([round1.pubnonce, last.pubnonce]);

      await kill9(first);
      const second = await start(tokens[0]!, `127.0.0.1:${first.port}`);
      expect(second.address).toBe(first.address);

      // The same client object, as a coordinator pinning round 2 would use; it reconnects.
      const refused = await client.sign({ sessionId: round1.sessionId, aggnonce, pubkeys, message }, { waitForReady: true }).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(refused).toBeInstanceOf(ClientError);
      expect((refused as ClientError).code).toBe(Status.NOT_FOUND);
      expect((refused as ClientError).details).toMatch(/session_id/);

      const fresh = await runSession({
        signers: [
          { keyId: 'random-1', client },
          { keyId: 'det-1', client },
        ],
        message,
      });
      expect(schnorr.verify(fresh.signature, message, fresh.aggregatePubkeyXonly)).toBe(true);
    } finally {
      client.close();
    }
  });

  it('runSession restarts round 1 once when a signer daemon restarted between rounds', async () => {
    let random = await start(tokens[0]!);
    const det = await start(tokens[1]!);
    const randomClient = new SignerClient(random.address);
    const detClient = new SignerClient(det.address);
    const events: SessionEvent[] = [];
    try {
      const message = randomBytes(32);
      const result = await runSession({
        signers: [
          { keyId: 'random-1', client: randomClient },
          { keyId: 'det-2', client: detClient },
        ],
        message,
        onEvent: async (event) => {
          events.push(event);
          if (event.kind === 'round1' && event.attempt === 0) {
            const port = random.port;
            await kill9(random);
            random = await start(tokens[0]!, `127.0.0.1:${port}`);
          }
        },
      });
      expect(result.restarts).toBe(1);
      expect(events.map((e) => e.kind)).toEqual(['round1', 'restart', 'round1']);
      expect(events[1]).toMatchObject({ kind: 'restart', signerIndex: 0 });
      expect(schnorr.verify(result.signature, message, result.aggregatePubkeyXonly)).toBe(true);
      // The first attempt's pubnonces were abandoned, not reused.
      const [first, second] = events.filter((e): e is Extract<SessionEvent, { kind: 'round1' }> => e.kind === 'round1');
      expect(Buffer.from(second!.pubnonces[0]!).equals(Buffer.from(first!.pubnonces[0]!))).toBe(false);
    } finally {
      randomClient.close();
      detClient.close();
    }
  });
});

describe('SIGTERM', () => {
  it('drains in-flight calls, wipes open sessions and exits 0', async () => {
    const d = await start(tokens[0]!);
    const client = new SignerClient(d.address);
    try {
      const keys = await client.listKeys();
      const pubkeys = keys.map((k) => k.publicKey);
      for (let i = 0; i < 3; i++) await client.nonceGen({ keyId: 'random-1', pubkeys });

      const det = (await client.listKeys()).find((k) => k.keyId === 'det-1')!;
      expect(det).toBeDefined();
      const other = await client.nonceGen({ keyId: 'random-1', pubkeys });
      const calls = Array.from({ length: 30 }, () =>
        client.deterministicSign({ keyId: 'det-1', aggothernonce: other.pubnonce, pubkeys, message: randomBytes(32) }),
      );
      // Signal once the daemon is demonstrably busy with the batch.
      await Promise.race(calls);
      const exited = d.stop('SIGTERM');
      const outcomes = await Promise.allSettled(calls);
      expect(outcomes.filter((o) => o.status === 'rejected')).toEqual([]);
      const { code } = await exited;
      running.delete(d);
      expect(code).toBe(0);
      const stopped = d.logEntries().find((e) => e.msg === 'stopped');
      expect(stopped).toMatchObject({ forced: false, sessionsWiped: 4 });
    } finally {
      client.close();
    }
  });
});

describe('listen address policy', () => {
  it('refuses plaintext on a non-loopback address without --insecure, before touching the token', async () => {
    const r = await runCli(['serve', '--listen', '0.0.0.0:0', '--ledger', 'sqlite::memory:'], { env: tokens[0]!.env });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('refusing plaintext gRPC on non-loopback address 0.0.0.0:0');
  });

  it('rejects a malformed listen address with exit code 2', async () => {
    const r = await runCli(['serve', '--listen', 'nowhere'], { env: tokens[0]!.env });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("listen address 'nowhere' is not HOST:PORT");
  });
});
