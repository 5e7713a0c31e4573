// A full disk under a signing load, as the daemon process sees it: its file-size limit
// (RLIMIT_FSIZE, set from outside with prlimit) drops to 1 byte, so the kernel refuses every
// write to the SQLite ledger and to the audit log (EFBIG), as a full or failing disk would. While
// it lasts the Signer is NOT_SERVING and answers UNAVAILABLE, no signature comes out; once the
// limit is raised the daemon recovers by itself.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { readSqliteLedger } from './invariants.js';
import { runOutageScenario, startFaultRig, type FaultRig } from './rig.js';

let rig: FaultRig;
beforeAll(async () => {
  rig = await startFaultRig('musig2-diskfault-');
});
afterAll(async () => {
  await rig?.close();
});

describe('a full disk for the whole daemon process (the ledger and the audit log alike)', () => {
  it('UNAVAILABLE and NOT_SERVING while no file can grow, no signature, recovers when space returns', async () => {
    const pid = String(rig.daemon.pid);
    const [soft, hard] = execFileSync('prlimit', ['--pid', pid, '--fsize', '--raw', '--noheadings', '--output=SOFT,HARD'])
      .toString()
      .trim()
      .split(/\s+/);
    await runOutageScenario(
      rig,
      'disk',
      {
        takeDown: async () => void execFileSync('prlimit', ['--pid', pid, `--fsize=1:${hard}`]),
        bringBack: async () => void execFileSync('prlimit', ['--pid', pid, `--fsize=${soft}:${hard}`]),
      },
      () => readSqliteLedger(join(rig.token.dir, 'ledger.sqlite')),
    );
  }, 180_000);
});
