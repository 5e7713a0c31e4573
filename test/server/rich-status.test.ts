// The hand-written google.rpc.Status / ErrorInfo codec against protobufjs (via proto-loader).
import { fileURLToPath } from 'node:url';
import * as protoLoader from '@grpc/proto-loader';
import { describe, expect, it } from 'vitest';
import {
  decodeStatus,
  encodeErrorInfo,
  encodeStatus,
  ERROR_INFO_TYPE_URL,
  MAX_ERROR_INFO_ENTRIES,
  MAX_ERROR_INFO_VALUE_CHARS,
} from '../../src/protocol/rich-status.js';

const def = protoLoader.loadSync(fileURLToPath(new URL('./fixtures/rpc_status.proto', import.meta.url)), {
  defaults: true,
  bytes: Buffer,
});
const codec = (def['testonly.rpc.Codec'] as protoLoader.ServiceDefinition).Status!;
const encodeStatusRef = (v: object): Buffer => codec.requestSerialize(v);
const decodeStatusRef = (b: Uint8Array) =>
  codec.requestDeserialize(Buffer.from(b)) as { code: number; message: string; details: { typeUrl: string; value: Buffer }[] };
const encodeInfoRef = (v: object): Buffer => codec.responseSerialize(v);
const decodeInfoRef = (b: Uint8Array) =>
  codec.responseDeserialize(Buffer.from(b)) as { reason: string; domain: string; metadata: Record<string, string> };

const info = {
  reason: 'INVALID_CONTRIBUTION',
  domain: 'musig2.signer.v1',
  metadata: { signer: '2', contribution: 'pubnonce' },
};

describe('rich-status codec', () => {
  it('encodes a Status that protobufjs decodes field for field', () => {
    const bytes = encodeStatus({ code: 3, message: 'pubnonces[2]: invalid pubnonce — ünïcode', errorInfos: [info] });
    const ref = decodeStatusRef(bytes);
    expect(ref.code).toBe(3);
    expect(ref.message).toBe('pubnonces[2]: invalid pubnonce — ünïcode');
    expect(ref.details).toHaveLength(1);
    expect(ref.details[0]!.typeUrl).toBe(ERROR_INFO_TYPE_URL);
    expect(decodeInfoRef(ref.details[0]!.value)).toEqual(info);
  });

  it('decodes what protobufjs encodes, skipping other detail types', () => {
    const bytes = encodeStatusRef({
      code: 9,
      message: 'x'.repeat(300),
      details: [
        { typeUrl: 'type.googleapis.com/google.rpc.DebugInfo', value: Buffer.from([1, 2, 3]) },
        { typeUrl: ERROR_INFO_TYPE_URL, value: encodeInfoRef(info) },
      ],
    });
    expect(decodeStatus(bytes)).toEqual({ code: 9, message: 'x'.repeat(300), errorInfos: [info] });
  });

  it('ErrorInfo bytes match protobufjs for a single-entry map', () => {
    const one = { reason: 'R', domain: 'D', metadata: { signer: 'aggregator' } };
    expect(Buffer.from(encodeErrorInfo(one)).toString('hex')).toBe(encodeInfoRef(one).toString('hex'));
  });

  it('rejects truncated input instead of returning garbage', () => {
    const bytes = encodeStatus({ code: 3, message: 'm', errorInfos: [info] });
    for (let cut = 1; cut < bytes.length; cut++) {
      const prefix = bytes.subarray(0, cut);
      let decoded: ReturnType<typeof decodeStatus> | undefined;
      try {
        decoded = decodeStatus(prefix);
      } catch {
        continue;
      }
      // A cut on a field boundary is a valid shorter message; it must not invent an ErrorInfo.
      expect(decoded.errorInfos.length).toBe(0);
    }
  });

  it('keeps an ErrorInfo small whatever its metadata says (the trailer carries it)', () => {
    const metadata = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`k${i}`, 'x'.repeat(100_000)]));
    const bytes = encodeStatus({ code: 7, message: 'denied', errorInfos: [{ reason: 'R', domain: 'd', metadata }] });
    const info = decodeStatus(bytes).errorInfos[0]!;
    expect(Object.keys(info.metadata)).toHaveLength(MAX_ERROR_INFO_ENTRIES);
    for (const v of Object.values(info.metadata)) expect(v.length).toBe(MAX_ERROR_INFO_VALUE_CHARS);
    expect(bytes.length).toBeLessThan(MAX_ERROR_INFO_ENTRIES * (MAX_ERROR_INFO_VALUE_CHARS * 3 + 16) + 64);
  });
});
