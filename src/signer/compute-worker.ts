// A compute-pool worker thread: runs musig2 NonceGen, Sign and DeterministicSign, and the
// Aggregator's public KeyAgg, NonceAgg, PartialSigVerify and PartialSigAgg, for the pool in
// compute-pool.ts. It imports musig2 only (no keystore, ledger or logger), builds the G
// tables, then says it is ready.
//
// Secrets arrive in the request's transferred `secret` ArrayBuffer; musig2 reads them through
// views, and the buffer is zeroed in `finally` whatever happens. Outputs go back transferred,
// so no copy of a secret output (the secnonce) stays here.

import { parentPort, workerData } from 'node:worker_threads';
import type { MessagePort } from 'node:worker_threads';
import * as musig2 from '../musig2/index.js';
import { RAND_BYTES, SECNONCE_BYTES, SK_BYTES, isPublicRequest, isTestRequest, serializeError } from './compute-protocol.js';
import type {
  ComputeRequest,
  ComputeResponse,
  ComputeTestOp,
  ComputeWorkerData,
  PublicRequest,
  SecretRequest,
} from './compute-protocol.js';

const port = ((): MessagePort => {
  if (parentPort === null) throw new Error('compute-worker runs only as a worker thread');
  return parentPort;
})();
const data = workerData as ComputeWorkerData | undefined;
const test = data?.test === true;

/**
 * The ArrayBuffer to transfer for `out`: its own buffer when the view spans all of it, else a
 * fresh copy (and a secret source is zeroed, so only the transferred copy remains).
 */
function transferable(out: Uint8Array, secret: boolean, transfer: ArrayBuffer[]): ArrayBuffer {
  let buf: ArrayBuffer;
  if (out.buffer instanceof ArrayBuffer && out.byteOffset === 0 && out.byteLength === out.buffer.byteLength) {
    buf = out.buffer;
  } else {
    buf = new ArrayBuffer(out.byteLength);
    new Uint8Array(buf).set(out);
    if (secret) out.fill(0);
  }
  transfer.push(buf);
  return buf;
}

function testOp(id: number, op: ComputeTestOp, sab: SharedArrayBuffer | undefined): void {
  if (op === 'exit') process.exit(3);
  if (op === 'crash') throw new Error('test crash'); // uncaught: the worker dies with an 'error' event
  if (sab === undefined) return;
  const flags = new Int32Array(sab);
  Atomics.store(flags, 1, 1);
  Atomics.notify(flags, 1);
  Atomics.wait(flags, 0, 0);
  port.postMessage({ type: 'result', id, ok: true, out: [] } satisfies ComputeResponse);
}

/** Runs one secret-bearing operation; returns its outputs as [bytes, isSecret] pairs. */
function run(req: SecretRequest, secret: Uint8Array): [Uint8Array, boolean][] {
  switch (req.op) {
    case 'nonceGen': {
      let off = 0;
      const sk = req.hasSk ? secret.subarray(off, (off += SK_BYTES)) : undefined;
      const rand = req.hasRand ? secret.subarray(off, (off += RAND_BYTES)) : undefined;
      const out = musig2.nonceGen({ sk, pk: req.pk, aggpk: req.aggpk, msg: req.msg, extraIn: req.extraIn, rand });
      return [
        [out.secnonce, true],
        [out.pubnonce, false],
      ];
    }
    case 'sign': {
      const sk = secret.subarray(0, SK_BYTES);
      const secnonce = secret.subarray(SK_BYTES, SK_BYTES + SECNONCE_BYTES);
      const psig = musig2.sign(secnonce, sk, { aggnonce: req.aggnonce, pubkeys: req.pubkeys, tweaks: req.tweaks, msg: req.msg });
      return [[psig, false]];
    }
    case 'deterministicSign': {
      const sk = secret.subarray(0, SK_BYTES);
      const rand = req.hasRand ? secret.subarray(SK_BYTES, SK_BYTES + RAND_BYTES) : undefined;
      const out = musig2.deterministicSign(sk, req.aggothernonce, req.pubkeys, req.tweaks, req.msg, rand);
      return [
        [out.pubnonce, false],
        [out.psig, false],
      ];
    }
  }
}

/** Runs one public operation; every output is public. */
function runPublic(req: PublicRequest): Uint8Array[] {
  switch (req.op) {
    case 'keyAgg': {
      const ctx = musig2.keyAggAndTweak(req.pubkeys, req.tweaks);
      return [musig2.getXonlyPk(ctx), musig2.getPlainPk(ctx)];
    }
    case 'nonceAgg':
      return [musig2.nonceAgg(req.pubnonces)];
    case 'partialSigVerify':
      return [Uint8Array.of(musig2.partialSigVerify(req.psig, req.pubnonces, req.pubkeys, req.tweaks, req.msg, req.i) ? 1 : 0)];
    case 'partialSigAgg':
      return [musig2.partialSigAgg(req.psigs, { aggnonce: req.aggnonce, pubkeys: req.pubkeys, tweaks: req.tweaks, msg: req.msg })];
  }
}

function handlePublic(req: PublicRequest): void {
  const transfer: ArrayBuffer[] = [];
  let res: ComputeResponse;
  try {
    // Fresh copies (at most 66 bytes) go back, never musig2's own arrays: one it also keeps in
    // a cache would be detached by the transfer.
    const out = runPublic(req).map((bytes) => {
      const buf = bytes.slice().buffer;
      transfer.push(buf);
      return buf;
    });
    res = { type: 'result', id: req.id, ok: true, out };
  } catch (err) {
    res = { type: 'result', id: req.id, ok: false, error: serializeError(err) };
  }
  port.postMessage(res, transfer);
}

function handle(msg: ComputeRequest): void {
  if (isTestRequest(msg)) {
    if (test) testOp(msg.id, msg.op, msg.sab); // never in production workers
    return;
  }
  if (isPublicRequest(msg)) {
    handlePublic(msg);
    return;
  }
  const req: SecretRequest = msg;
  const secret = new Uint8Array(req.secret);
  const transfer: ArrayBuffer[] = [];
  let res: ComputeResponse;
  try {
    const out = run(req, secret).map(([bytes, isSecret]) => transferable(bytes, isSecret, transfer));
    res = { type: 'result', id: req.id, ok: true, out };
  } catch (err) {
    res = { type: 'result', id: req.id, ok: false, error: serializeError(err) };
  } finally {
    secret.fill(0);
  }
  if (test) {
    res.wiped = req.secret;
    transfer.push(req.secret);
  }
  port.postMessage(res, transfer);
}

if (test && data?.failStart === true) throw new Error('test start failure');
// The main thread's backend; if it cannot run here (native addon missing), starting fails.
if (data !== undefined) musig2.selectBackend(data.backend);
musig2.warmUp();
port.on('message', handle);
port.postMessage({ type: 'ready' } satisfies ComputeResponse);
