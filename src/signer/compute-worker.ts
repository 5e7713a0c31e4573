// A compute-pool worker thread: runs musig2 NonceGen, Sign and DeterministicSign, and the
// Aggregator's public KeyAgg, NonceAgg, PartialSigVerify and PartialSigAgg, for the pool in
// compute-pool.ts. It imports musig2 only (no keystore, ledger or logger), builds the G
// tables, then says it is ready.
//
// A request arrives as one transferred ArrayBuffer; musig2 reads its inputs through views, and
// its secret prefix is zeroed in `finally` whatever happens. Outputs go back transferred,
// so no copy of a secret output (the secnonce) stays here.

import { parentPort, workerData } from 'node:worker_threads';
import type { MessagePort } from 'node:worker_threads';
import * as musig2 from '../musig2/index.js';
import { isTestRequest, serializeError, unpackRequest } from './compute-protocol.js';
import type { ComputeRequest, ComputeResponse, ComputeTestOp, ComputeWorkerData, OpRequest } from './compute-protocol.js';

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

/** The tweaks at the end of a request's parts. */
function tweaksOf(parts: readonly (Uint8Array | undefined)[], from: number, xonly: readonly boolean[]): musig2.Tweak[] {
  return xonly.map((x, j) => ({ tweak: parts[from + j]!, xonly: x }));
}

/** Runs one operation on the views into its request buffer; returns its outputs as [bytes, isSecret] pairs. */
function run(req: OpRequest, parts: (Uint8Array | undefined)[]): [Uint8Array, boolean][] {
  const list = (from: number, n: number) => parts.slice(from, from + n) as Uint8Array[];
  switch (req.op) {
    case 'nonceGen': {
      const [sk, rand, pk, aggpk, msg, extraIn] = parts;
      const out = musig2.nonceGen({ sk, pk: pk!, aggpk, msg, extraIn, rand });
      return [
        [out.secnonce, true],
        [out.pubnonce, false],
      ];
    }
    case 'sign': {
      const [sk, secnonce, aggnonce, msg] = parts;
      const n = req.counts[0]!;
      const psig = musig2.sign(secnonce!, sk!, { aggnonce: aggnonce!, pubkeys: list(4, n), tweaks: tweaksOf(parts, 4 + n, req.xonly), msg: msg! });
      return [[psig, false]];
    }
    case 'deterministicSign': {
      const [sk, rand, aggothernonce, msg] = parts;
      const n = req.counts[0]!;
      const out = musig2.deterministicSign(sk!, aggothernonce!, list(4, n), tweaksOf(parts, 4 + n, req.xonly), msg!, rand);
      return [
        [out.pubnonce, false],
        [out.psig, false],
      ];
    }
    case 'keyAgg': {
      const n = req.counts[0]!;
      const ctx = musig2.keyAggAndTweak(list(0, n), tweaksOf(parts, n, req.xonly));
      return [
        [musig2.getXonlyPk(ctx), false],
        [musig2.getPlainPk(ctx), false],
      ];
    }
    case 'nonceAgg':
      return [[musig2.nonceAgg(parts as Uint8Array[]), false]];
    case 'partialSigVerify': {
      const [psig, msg] = parts;
      const [nn, nk] = req.counts as [number, number];
      const ok = musig2.partialSigVerify(psig!, list(2, nn), list(2 + nn, nk), tweaksOf(parts, 2 + nn + nk, req.xonly), msg!, req.i!);
      return [[Uint8Array.of(ok ? 1 : 0), false]];
    }
    case 'partialSigAgg': {
      const [aggnonce, msg] = parts;
      const [ns, nk] = req.counts as [number, number];
      const sig = musig2.partialSigAgg(list(2, ns), { aggnonce: aggnonce!, pubkeys: list(2 + ns, nk), tweaks: tweaksOf(parts, 2 + ns + nk, req.xonly), msg: msg! });
      return [[sig, false]];
    }
  }
}

function handle(msg: ComputeRequest): void {
  if (isTestRequest(msg)) {
    if (test) testOp(msg.id, msg.op, msg.sab); // never in production workers
    return;
  }
  const req: OpRequest = msg;
  const secret = new Uint8Array(req.buf, 0, req.secretBytes);
  const transfer: ArrayBuffer[] = [];
  let res: ComputeResponse;
  try {
    const parts = unpackRequest(req.buf, req.lens);
    // Public outputs go back as fresh copies, never musig2's own arrays (one it also keeps in a
    // cache would be detached by the transfer); secret ones are moved, or copied and wiped.
    const out = run(req, parts).map(([bytes, isSecret]) => (isSecret ? transferable(bytes, true, transfer) : transferable(bytes.slice(), false, transfer)));
    res = { type: 'result', id: req.id, ok: true, out };
  } catch (err) {
    res = { type: 'result', id: req.id, ok: false, error: serializeError(err) };
  } finally {
    secret.fill(0);
  }
  if (test && req.secretBytes > 0) {
    res.wiped = req.buf;
    transfer.push(req.buf);
  }
  port.postMessage(res, transfer);
}

if (test && data?.failStart === true) throw new Error('test start failure');
// The main thread's backend; if it cannot run here (native addon missing), starting fails.
if (data !== undefined) musig2.selectBackend(data.backend);
musig2.warmUp();
port.on('message', handle);
port.postMessage({ type: 'ready' } satisfies ComputeResponse);
