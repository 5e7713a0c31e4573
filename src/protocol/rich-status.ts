// The standard gRPC rich-error trailer: `grpc-status-details-bin` carries a serialized
// google.rpc.Status whose `details` are google.protobuf.Any values; we use one kind, a
// google.rpc.ErrorInfo. The three messages are tiny and fixed, so this is a hand-written
// protobuf wire codec rather than a dependency on the googleapis protos:
//   Status    { int32 code = 1; string message = 2; repeated Any details = 3; }
//   Any       { string type_url = 1; bytes value = 2; }
//   ErrorInfo { string reason = 1; string domain = 2; map<string, string> metadata = 3; }
// (a map entry is a nested message { string key = 1; string value = 2; }).
// It lives with the client SDK so the SDK has no server dependency; the server imports it.

export const STATUS_DETAILS_KEY = 'grpc-status-details-bin';
export const ERROR_INFO_TYPE_URL = 'type.googleapis.com/google.rpc.ErrorInfo';

export interface ErrorInfo {
  reason: string;
  domain: string;
  metadata: Record<string, string>;
}

export interface RichStatus {
  code: number;
  message: string;
  /** The ErrorInfo details; other Any types are skipped. */
  errorInfos: ErrorInfo[];
}

const VARINT = 0;
const I64 = 1;
const LEN = 2;
const I32 = 5;

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder('utf-8', { fatal: true });

class Writer {
  private readonly parts: number[] = [];

  varint(value: number): this {
    // Status codes and lengths are small non-negative integers.
    let v = value >>> 0;
    while (v > 0x7f) {
      this.parts.push((v & 0x7f) | 0x80);
      v >>>= 7;
    }
    this.parts.push(v);
    return this;
  }

  tag(field: number, wireType: number): this {
    return this.varint((field << 3) | wireType);
  }

  bytes(field: number, value: Uint8Array): this {
    this.tag(field, LEN).varint(value.length);
    for (const b of value) this.parts.push(b);
    return this;
  }

  string(field: number, value: string): this {
    return this.bytes(field, utf8.encode(value));
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}

/** Calls `onField` for each field of one protobuf message; throws on malformed input. */
function readFields(buf: Uint8Array, onField: (field: number, wireType: number, value: number | Uint8Array) => void): void {
  let pos = 0;
  const varint = (): number => {
    let result = 0;
    let shift = 0;
    for (;;) {
      if (pos >= buf.length) throw new Error('truncated varint');
      const b = buf[pos++]!;
      // Values above 2^32 only occur in fields we skip; keep the low bits.
      if (shift < 32) result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return result;
      shift += 7;
      if (shift > 63) throw new Error('varint too long');
    }
  };
  while (pos < buf.length) {
    const key = varint();
    const field = Math.floor(key / 8);
    const wireType = key & 7;
    if (field === 0) throw new Error('field number 0');
    switch (wireType) {
      case VARINT:
        onField(field, wireType, varint());
        break;
      case I64:
        if (pos + 8 > buf.length) throw new Error('truncated fixed64');
        pos += 8;
        break;
      case I32:
        if (pos + 4 > buf.length) throw new Error('truncated fixed32');
        pos += 4;
        break;
      case LEN: {
        const len = varint();
        if (len > buf.length - pos) throw new Error('truncated length-delimited field');
        onField(field, wireType, buf.subarray(pos, pos + len));
        pos += len;
        break;
      }
      default:
        throw new Error(`unsupported wire type ${wireType}`);
    }
  }
}

/** Longest ErrorInfo metadata value sent, and most entries: a trailer must stay small (a large
 * one can wedge the HTTP/2 connection), whatever a caller's request made the details say. */
export const MAX_ERROR_INFO_VALUE_CHARS = 512;
export const MAX_ERROR_INFO_ENTRIES = 24;

function capValue(value: string): string {
  return value.length <= MAX_ERROR_INFO_VALUE_CHARS ? value : `${value.slice(0, MAX_ERROR_INFO_VALUE_CHARS - 1)}…`;
}

export function encodeErrorInfo(info: ErrorInfo): Uint8Array {
  const w = new Writer().string(1, info.reason).string(2, info.domain);
  for (const [key, value] of Object.entries(info.metadata).slice(0, MAX_ERROR_INFO_ENTRIES)) {
    w.bytes(3, new Writer().string(1, key.slice(0, 64)).string(2, capValue(value)).finish());
  }
  return w.finish();
}

export function encodeStatus(status: RichStatus): Uint8Array {
  const w = new Writer();
  if (status.code !== 0) w.tag(1, VARINT).varint(status.code);
  if (status.message !== '') w.string(2, status.message);
  for (const info of status.errorInfos) {
    const any = new Writer().string(1, ERROR_INFO_TYPE_URL).bytes(2, encodeErrorInfo(info)).finish();
    w.bytes(3, any);
  }
  return w.finish();
}

function decodeErrorInfo(buf: Uint8Array): ErrorInfo {
  const info: ErrorInfo = { reason: '', domain: '', metadata: {} };
  readFields(buf, (field, wireType, value) => {
    if (wireType !== LEN || !(value instanceof Uint8Array)) return;
    if (field === 1) info.reason = fromUtf8.decode(value);
    else if (field === 2) info.domain = fromUtf8.decode(value);
    else if (field === 3) {
      let key = '';
      let val = '';
      readFields(value, (f, wt, v) => {
        if (wt !== LEN || !(v instanceof Uint8Array)) return;
        if (f === 1) key = fromUtf8.decode(v);
        else if (f === 2) val = fromUtf8.decode(v);
      });
      info.metadata[key] = val;
    }
  });
  return info;
}

/** Decodes a serialized google.rpc.Status; throws on malformed bytes. */
export function decodeStatus(buf: Uint8Array): RichStatus {
  const status: RichStatus = { code: 0, message: '', errorInfos: [] };
  readFields(buf, (field, wireType, value) => {
    if (field === 1 && wireType === VARINT && typeof value === 'number') status.code = value | 0;
    else if (field === 2 && wireType === LEN && value instanceof Uint8Array) status.message = fromUtf8.decode(value);
    else if (field === 3 && wireType === LEN && value instanceof Uint8Array) {
      let typeUrl = '';
      let body: Uint8Array = new Uint8Array(0);
      readFields(value, (f, wt, v) => {
        if (wt !== LEN || !(v instanceof Uint8Array)) return;
        if (f === 1) typeUrl = fromUtf8.decode(v);
        else if (f === 2) body = v;
      });
      if (typeUrl === ERROR_INFO_TYPE_URL) status.errorInfos.push(decodeErrorInfo(body));
    }
  });
  return status;
}
