// Event-loop delay while DeterministicSign calls with fresh 100-key lists run: a 1 ms timer's
// worst lateness, in-process (real SoftHSM2 token, real SQLite ledger, a compute pool of
// workers). Run: `npx tsx bench/event-loop.ts` (CALLS=40 KEYS=100 WORKERS=2 by default).
// Not part of `npm run bench`; a one-off measurement for the hardening work.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Keystore, initSoftHsmToken } from '../src/keystore/index.js';
import { openLedger } from '../src/ledger/index.js';
import * as musig2 from '../src/musig2/index.js';
import { ComputePool, SignerService } from '../src/signer/index.js';

const CALLS = Number(process.env.CALLS ?? 40);
const KEYS = Number(process.env.KEYS ?? 100);
const WORKERS = Number(process.env.WORKERS ?? 2);

const dir = mkdtempSync(join(tmpdir(), 'musig2-evloop-'));
try {
  const t = await initSoftHsmToken({ dir: join(dir, 'token'), label: 'evloop', soPin: 'so-pin-1', userPin: 'user-pin-1' });
  process.env.SOFTHSM2_CONF = t.conf;
  const keystore = await Keystore.open({ modulePath: t.modulePath, tokenLabel: 'evloop', pin: 'user-pin-1' });
  const key = await keystore.createKey('evloop-1');
  const ledger = await openLedger(`sqlite:${join(dir, 'ledger.sqlite')}`);
  const compute = await ComputePool.start(WORKERS);
  const signer = new SignerService({ keystore, ledger, compute });

  const others = () => {
    const sk = new Uint8Array(randomBytes(32));
    return { pk: musig2.individualPubkey(sk), nonce: musig2.nonceGen({ sk, pk: musig2.individualPubkey(sk), extraIn: new Uint8Array(randomBytes(32)) }).pubnonce };
  };
  // Fresh lists: each call's 99 other keys are new, so no key-aggregation cache helps.
  const requests = Array.from({ length: CALLS }, () => {
    const o = Array.from({ length: KEYS - 1 }, others);
    return {
      keyId: 'evloop-1',
      aggothernonce: musig2.nonceAgg(o.map((x) => x.nonce)),
      pubkeys: [key.publicKey, ...o.map((x) => x.pk)],
      tweaks: [],
      message: new Uint8Array(randomBytes(32)),
    };
  });

  let worst = 0;
  let expected = performance.now() + 1;
  const timer = setInterval(() => {
    const now = performance.now();
    worst = Math.max(worst, now - expected);
    expected = now + 1;
  }, 1);
  const started = performance.now();
  const results = await Promise.allSettled(requests.map((r) => signer.deterministicSign(r)));
  const elapsed = performance.now() - started;
  clearInterval(timer);
  const ok = results.filter((r) => r.status === 'fulfilled').length;
  console.log(
    `${CALLS} DeterministicSign, fresh ${KEYS}-key lists, ${WORKERS} workers: ${ok}/${CALLS} ok in ${elapsed.toFixed(0)} ms; ` +
      `worst lateness of a 1 ms timer: ${worst.toFixed(1)} ms`,
  );
  await signer.close();
  await compute.close();
  await ledger.close();
  await keystore.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
