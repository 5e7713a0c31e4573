// The transaction commands against a real daemon: `descriptor address`, `psbt update` (the
// BIP373 Updater from a musig() descriptor) on a bare PSBT, `psbt sign` on it (binary and base64
// files), and `psbt sign` on the demo PSBT that `npm start` writes. Each raw transaction is checked
// with bitcoinjs-lib.
import { writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { sha256 } from '@noble/hashes/sha2.js';
import { Transaction } from '@scure/btc-signer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { demoPsbt } from '../../src/cli/demo-psbt.js';
import { createKey, Daemon, makeToken, removeToken, runCli } from './harness.js';
import type { Token } from './harness.js';
import { fromHex, hex, verifyWithBitcoinjs } from './psbt-fixture.js';

let token: Token;
let daemon: Daemon;
const KEYS = ['k1', 'k2', 'k3'];
const pubkeys: Uint8Array[] = [];

beforeAll(async () => {
  token = await makeToken();
  for (const k of KEYS) pubkeys.push(await createKey(token, k));
  daemon = await Daemon.start(token);
});

afterAll(async () => {
  await daemon?.stop();
  await removeToken(token);
});

const signerArgs = () => KEYS.flatMap((k) => ['--signer', `${daemon.address}/${k}`]);

describe('psbt and descriptor commands', () => {
  it('descriptor address, psbt update on a bare PSBT, psbt sign from a binary file', async () => {
    const descriptor = `rawtr(musig(${pubkeys.map(hex).join(',')}))`;
    const addr = await runCli(['descriptor', 'address', '--descriptor', descriptor, '--network', 'regtest', '--json'], { env: token.env });
    expect(addr.code, addr.stderr).toBe(0);
    const { address, script_pubkey } = JSON.parse(addr.stdout) as { address: string; script_pubkey: string };
    expect(address).toMatch(/^bcrt1p/);

    // A bare PSBT: the spent output and nothing else, as a wallet that knows no MuSig2 writes it.
    const script = fromHex(script_pubkey);
    const tx = new Transaction({ allowUnknownOutputs: true });
    tx.addInput({ txid: sha256(Uint8Array.of(7)), index: 1, witnessUtxo: { script, amount: 50_000n } });
    tx.addOutput({ script, amount: 49_000n });
    const file = join(token.dir, 'bare.psbt');
    writeFileSync(file, tx.toPSBT());

    const upd = await runCli(['psbt', 'update', '--descriptor', descriptor, '--psbt', file, '--binary'], { env: token.env });
    expect(upd.code, upd.stderr).toBe(0);
    expect(upd.stdout).toMatch(/input 0/);
    const updated = Transaction.fromPSBT(readFileSync(file), { allowUnknownOutputs: true });
    expect(updated.getInput(0).musig2ParticipantPubkeys).toHaveLength(1);

    const out = join(token.dir, 'signed.psbt');
    const sign = await runCli(['psbt', 'sign', ...signerArgs(), '--psbt', file, '--out', out, '--json'], { env: token.env });
    expect(sign.code, sign.stderr).toBe(0);
    const r = JSON.parse(sign.stdout) as { txid: string; raw_tx: string; finalized: number[] };
    expect(r.finalized).toEqual([0]);
    expect(verifyWithBitcoinjs(fromHex(r.raw_tx), [script], [50_000n])).toBe(1);
    // --out wrote the finalized PSBT as base64.
    const written = Buffer.from(readFileSync(out, 'utf8').trim(), 'base64');
    expect(Transaction.fromPSBT(written, { allowUnknownOutputs: true }).isFinal).toBe(true);
  });

  it("psbt sign on npm start's demo PSBT (base64 file), as start prints it", async () => {
    const demo = demoPsbt(pubkeys);
    const file = join(token.dir, 'demo.psbt');
    writeFileSync(file, `${Buffer.from(demo.psbt).toString('base64')}\n`);
    const sign = await runCli(['psbt', 'sign', ...signerArgs(), '--psbt', file], { env: token.env });
    expect(sign.code, sign.stderr).toBe(0);
    const raw = /raw_tx ([0-9a-f]+)/.exec(sign.stdout)![1]!;
    const txid = /txid\s+([0-9a-f]{64})/.exec(sign.stdout)![1]!;
    const spent = Transaction.fromPSBT(demo.psbt, { allowUnknownOutputs: true }).getInput(0).witnessUtxo!;
    expect(verifyWithBitcoinjs(fromHex(raw), [spent.script], [spent.amount])).toBe(1);
    expect(Transaction.fromRaw(fromHex(raw), { allowUnknownOutputs: true }).id).toBe(txid);

    const addr = await runCli(['descriptor', 'address', '--descriptor', demo.descriptor, '--json'], { env: token.env });
    expect(JSON.parse(addr.stdout).script_pubkey).toBe(hex(spent.script));
  });

  it('refuses a file that is not a PSBT, and names a bad descriptor', async () => {
    const file = join(token.dir, 'junk.psbt');
    writeFileSync(file, 'not a psbt\n');
    const r = await runCli(['psbt', 'sign', ...signerArgs(), '--psbt', file], { env: token.env });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/not a PSBT/);
    const d = await runCli(['descriptor', 'address', '--descriptor', 'tr(musig(00))'], { env: token.env });
    expect(d.code).toBe(2);
  });
});
