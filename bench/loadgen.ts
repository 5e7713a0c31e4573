// A minimal gRPC load generator for the daemon benchmark: unary calls over one node:http2
// session, messages (de)serialised by the project's own contract (proto-loader).
//
// Why not the SDK client: on this 2-core machine the client shares the CPU with the daemon it
// measures, and grpc-js spends several times more CPU per call than the HTTP/2 framing needs.
// Every cycle the load generator burns is taken from the daemon at "all cores", so the
// scaling rows use this lean caller; the SDK client's own cost is reported in its own rows.
// It is not a client for real use: no TLS, no retries, no deadlines beyond a timeout.
import { connect, constants, type ClientHttp2Session } from 'node:http2';
import type { MethodDefinition } from '@grpc/proto-loader';
import { loadPackageDefinition, SIGNER_SERVICE } from '../src/protocol/contract.js';

/** A gRPC status other than OK, as the daemon sent it. */
export class CallError extends Error {
  constructor(
    readonly code: number,
    readonly details: string,
  ) {
    super(`gRPC status ${code}: ${details}`);
  }
}

export class LoadGenerator {
  private readonly session: ClientHttp2Session;
  private readonly methods: Record<string, MethodDefinition<object, object>>;

  /** `address` is host:port of a plaintext (loopback) daemon. */
  constructor(address: string) {
    this.session = connect(`http://${address}`); // node disables Nagle on every HTTP/2 socket
    this.session.on('error', () => {}); // each call reports its own failure
    this.methods = loadPackageDefinition()[SIGNER_SERVICE] as unknown as Record<string, MethodDefinition<object, object>>;
  }

  /** One unary call to the Signer service; resolves with the decoded response. */
  call<Res>(method: string, request: object): Promise<Res> {
    const def = this.methods[method];
    if (!def) return Promise.reject(new Error(`no such method: ${method}`));
    const body = def.requestSerialize(request);
    // The gRPC message frame: 1 byte "not compressed", 4 bytes big-endian length, the message.
    const frame = Buffer.allocUnsafe(5 + body.length);
    frame[0] = 0;
    frame.writeUInt32BE(body.length, 1);
    body.copy(frame, 5);
    return new Promise<Res>((resolve, reject) => {
      const stream = this.session.request({
        [constants.HTTP2_HEADER_METHOD]: 'POST',
        [constants.HTTP2_HEADER_PATH]: def.path,
        [constants.HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc',
        te: 'trailers',
      });
      const chunks: Buffer[] = [];
      let status: number | undefined;
      let details = '';
      const take = (h: Record<string, unknown>) => {
        if (h['grpc-status'] !== undefined) {
          status = Number(h['grpc-status']);
          details = decodeURIComponent(String(h['grpc-message'] ?? ''));
        }
      };
      stream.on('response', take); // a trailers-only answer carries the status in its headers
      stream.on('trailers', take);
      stream.on('data', (d: Buffer) => chunks.push(d));
      stream.on('error', reject);
      stream.on('close', () => {
        if (status === undefined) return reject(new Error(`stream closed without a gRPC status (rst code ${stream.rstCode})`));
        if (status !== 0) return reject(new CallError(status, details));
        const all = Buffer.concat(chunks);
        if (all.length < 5 || all.readUInt32BE(1) !== all.length - 5) return reject(new Error('malformed gRPC response frame'));
        resolve(def.responseDeserialize(all.subarray(5)) as Res);
      });
      stream.end(frame);
    });
  }

  close(): void {
    this.session.close();
  }
}
