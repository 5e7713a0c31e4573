// The token taken away from a running daemon under a signing load: SoftHSM's token folder is
// moved out of its tokens/ directory (as a removed or failed HSM would look), which ends the
// daemon's PKCS#11 sessions on it. While it is gone the Signer is NOT_SERVING and answers
// UNAVAILABLE, no signature comes out; once the folder is back the daemon reconnects by itself.
import { mkdirSync, readdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSqliteLedger } from './invariants.js';
import { runOutageScenario, startFaultRig, type FaultRig } from './rig.js';

let rig: FaultRig;
beforeAll(async () => {
  rig = await startFaultRig('musig2-tokenfault-');
});
afterAll(async () => {
  await rig?.close();
});

describe("the token's sessions closed under load", () => {
  it('UNAVAILABLE and NOT_SERVING while the token is gone, no signature, reconnects by itself', async () => {
    const tokens = join(rig.token.dir, 'hsm', 'tokens');
    const parked = join(rig.token.dir, 'parked');
    mkdirSync(parked);
    const [uuid] = readdirSync(tokens);
    expect(uuid).toBeDefined();
    await runOutageScenario(
      rig,
      'token',
      {
        takeDown: async () => renameSync(join(tokens, uuid!), join(parked, uuid!)),
        bringBack: async () => renameSync(join(parked, uuid!), join(tokens, uuid!)),
      },
      () => readSqliteLedger(join(rig.token.dir, 'ledger.sqlite')),
    );
  }, 180_000);
});
