// The signing policy in the signer (not part of `npm run bench`; run `npx tsx bench/policy-gate.ts`,
// about 1 min): PolicyGate.checkPsbt on a 100-input wallet PSBT (summary with change re-derived at
// its claimed index, fee from the UTXOs, evaluation; no velocity rule, so no ledger read) beside
// PsbtDeterministicSign on 100-input PSBTs of the same shape (no policy, inline arithmetic,
// SQLite ledger), per input; then in-process DeterministicSign throughput of a stateless final
// signer (no ledger) beside the same service on SQLite. Real SoftHSM2 token in a temp dir.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import * as musig2 from '../src/musig2/index.js';
import { NoLedger, openLedger } from '../src/ledger/index.js';
import { parsePolicy } from '../src/policy/index.js';
import { decodePsbt, planSigning } from '../src/psbt/index.js';
import { ComputePool, defaultPoolSize, PolicyGate, PsbtSignerService, SignerService } from '../src/signer/index.js';
import { openTestKeystore, rand } from '../test/signer/helpers.js';
import { changeScript, walletDescriptor, walletTx, withOtherNonces } from '../test/signer/policy-fixture.js';
import { p2tr } from '../test/policy/helpers.js';

const { dir, keystore } = await openTestKeystore('measure-');
const keys = await Promise.all(['ours', 'a', 'b'].map((l) => keystore.createKey(l)));
const wallet = walletDescriptor(keys.map((k) => k.publicKey));
const policy = parsePolicy(JSON.stringify({ version: 1, network: 'regtest', keys: { ours: { wallets: [wallet.text], allow_raw_message: true, rules: [{ name: 'r', max_amount: 10_000_000, max_fee: { sats: 100_000 } }] } } }));
const N = 100;
const t = walletTx(wallet.desc, Array.from({ length: N }, () => 10_000n), [{ script: p2tr(0x42), amount: 500_000n }, { script: changeScript(wallet.desc, 3), amount: 1_000_000n - 500_000n - 5_000n }], 'm');
const helperLedger = await openLedger(`sqlite:${join(dir, 'h.db')}`);
const helper = new PsbtSignerService({ keystore, ledger: helperLedger });
const psbt = await withOtherNonces(helper, ['a', 'b'], t.psbt);
const gate = new PolicyGate(policy);
const tx = decodePsbt(psbt);
const plan = planSigning(tx, keys[0]!.publicKey);
for (let i = 0; i < 20; i++) await gate.checkPsbt('ours', tx, plan, []);
let t0 = performance.now();
const R = 200;
for (let i = 0; i < R; i++) await gate.checkPsbt('ours', tx, plan, []);
const checkMs = (performance.now() - t0) / R;
const ledger = await openLedger(`sqlite:${join(dir, 'l.db')}`);
const svc = new PsbtSignerService({ keystore, ledger });
await svc.psbtDeterministicSign({ keyId: 'ours', psbt });
const S = 5;
const ready = [];
for (let i = 0; i < S; i++) ready.push(await withOtherNonces(helper, ['a', 'b'], walletTx(wallet.desc, Array.from({ length: N }, () => 10_000n), [{ script: p2tr(0x42), amount: 500_000n }], `s${i}`).psbt));
t0 = performance.now();
for (const p of ready) await svc.psbtDeterministicSign({ keyId: 'ours', psbt: p });
const signMs = (performance.now() - t0) / S;
console.log(`policy check: ${checkMs.toFixed(3)} ms per ${N}-input PSBT = ${((checkMs / N) * 1000).toFixed(1)} us/input; PsbtDeterministicSign (no policy, inline, SQLite) ${signMs.toFixed(1)} ms = ${((signMs / N) * 1000).toFixed(0)} us/input`);

// DeterministicSign throughput: no ledger vs SQLite, same pool.
const compute = await ComputePool.start(defaultPoolSize());
const pubkeys = keys.map((k) => k.publicKey);
const others = [musig2.nonceGen({ sk: rand(32), pk: pubkeys[1]!, extraIn: rand(32) }).pubnonce, musig2.nonceGen({ sk: rand(32), pk: pubkeys[2]!, extraIn: rand(32) }).pubnonce];
const aggothernonce = musig2.nonceAgg(others);
for (const [name, l] of [['no ledger', new NoLedger()], ['SQLite', await openLedger(`sqlite:${join(dir, 'd.db')}`)]] as const) {
  const s = new SignerService({ keystore, ledger: l, compute });
  const CALLS = 2000;
  const INFLIGHT = 32;
  let next = 0;
  const worker = async () => {
    while (next < CALLS) {
      next++;
      await s.deterministicSign({ keyId: 'ours', aggothernonce, pubkeys, tweaks: [], message: rand(32) });
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  next = 0;
  const st = performance.now();
  await Promise.all(Array.from({ length: INFLIGHT }, worker));
  const secs = (performance.now() - st) / 1000;
  console.log(`DeterministicSign in process, ${name}: ${(CALLS / secs).toFixed(0)}/s (${CALLS} calls, ${INFLIGHT} in flight, ${compute.size} workers)`);
  await s.close();
  await l.close();
}
await compute.close();
await Promise.all([helper.close(), svc.close()]);
await Promise.all([helperLedger.close(), ledger.close()]);
await keystore.close();
rmSync(dir, { recursive: true, force: true });
