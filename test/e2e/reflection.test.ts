// Server reflection against a running daemon: the file it serves must be the contract exactly as
// proto/musig2/signer/v1/signer.proto writes it, byte for byte what protoc (Debian's
// protobuf-compiler, an implementation that shares no code with ours) compiles from that file.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, loadPackageDefinition } from '@grpc/grpc-js';
import type { ClientDuplexStream } from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import descriptor from 'protobufjs/ext/descriptor/index.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon, makeToken, removeToken, ROOT } from './harness.js';
import type { Token } from './harness.js';

const PROTO_FILE = 'musig2/signer/v1/signer.proto';

/** protoc's FileDescriptorProto of the contract: the one file of a FileDescriptorSet, raw bytes. */
function protocDescriptor(): Buffer {
  const dir = mkdtempSync(join(tmpdir(), 'musig2-protoc-'));
  try {
    const out = join(dir, 'set.pb');
    execFileSync('protoc', ['-I', join(ROOT, 'proto'), `--descriptor_set_out=${out}`, join(ROOT, 'proto', PROTO_FILE)]);
    const set = readFileSync(out);
    // FileDescriptorSet { repeated FileDescriptorProto file = 1; }: tag 0x0a, varint length, bytes.
    expect(set[0]).toBe(0x0a);
    let len = 0;
    let shift = 0;
    let i = 1;
    for (;;) {
      const b = set[i++]!;
      len |= (b & 0x7f) << shift;
      shift += 7;
      if (b < 0x80) break;
    }
    expect(i + len).toBe(set.length); // exactly one file
    return set.subarray(i, i + len);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

interface ReflectionStub {
  ServerReflectionInfo(): ClientDuplexStream<object, Record<string, unknown>>;
  close(): void;
}

function reflectionClient(version: 'v1' | 'v1alpha', address: string): ReflectionStub {
  const path = join(ROOT, `node_modules/@grpc/reflection/build/proto/grpc/reflection/${version}/reflection.proto`);
  const pkg = loadPackageDefinition(protoLoader.loadSync(path, { keepCase: true, defaults: true })) as unknown as {
    grpc: { reflection: Record<string, { ServerReflection: new (addr: string, creds: ReturnType<typeof credentials.createInsecure>) => ReflectionStub }> };
  };
  return new pkg.grpc.reflection[version]!.ServerReflection(address, credentials.createInsecure());
}

function ask(stub: ReflectionStub, req: object): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const call = stub.ServerReflectionInfo();
    call.on('data', (res) => {
      resolve(res);
      call.end();
    });
    call.on('error', reject);
    call.write(req);
  });
}

type FileResponse = { file_descriptor_response?: { file_descriptor_proto: Buffer[] }; error_response?: { error_code: number } };

let token: Token;
let daemon: Daemon;
let expected: Buffer;

beforeAll(async () => {
  expected = protocDescriptor();
  token = await makeToken();
  daemon = await Daemon.start(token);
});

afterAll(async () => {
  await daemon?.stop();
  await removeToken(token);
});

describe.each(['v1', 'v1alpha'] as const)('server reflection %s', (version) => {
  let stub: ReflectionStub;
  beforeAll(() => {
    stub = reflectionClient(version, daemon.address);
  });
  afterAll(() => stub?.close());

  it('lists the Signer and Aggregator services', async () => {
    const listed = (await ask(stub, { list_services: '*' })) as { list_services_response: { service: { name: string }[] } };
    const names = listed.list_services_response.service.map((s) => s.name);
    expect(names).toEqual(expect.arrayContaining(['musig2.signer.v1.Signer', 'musig2.signer.v1.Aggregator']));
  });

  it('serves the contract file byte for byte as protoc compiles it', async () => {
    for (const req of [
      { file_containing_symbol: 'musig2.signer.v1.Signer' },
      { file_containing_symbol: 'musig2.signer.v1.Aggregator' },
      { file_containing_symbol: 'musig2.signer.v1.NonceGenRequest' },
      { file_by_filename: PROTO_FILE },
    ]) {
      const res = (await ask(stub, req)) as FileResponse;
      const files = res.file_descriptor_response?.file_descriptor_proto ?? [];
      expect(files, JSON.stringify(req)).toHaveLength(1);
      expect(Buffer.from(files[0]!).equals(expected), JSON.stringify(req)).toBe(true);
    }
  });

  it('uses the .proto names: real path, snake_case fields, qualified types, proto3 optional', async () => {
    const res = (await ask(stub, { file_containing_symbol: 'musig2.signer.v1.Signer' })) as FileResponse;
    const file = descriptor.FileDescriptorProto.toObject(
      descriptor.FileDescriptorProto.decode(res.file_descriptor_response!.file_descriptor_proto[0]!),
    ) as { name: string; messageType: { name: string; field: Record<string, unknown>[]; oneofDecl?: { name: string }[] }[] };
    expect(file.name).toBe(PROTO_FILE);
    const nonceGen = file.messageType.find((m) => m.name === 'NonceGenRequest')!;
    expect(nonceGen.field.map((f) => f['name'])).toEqual(['key_id', 'pubkeys', 'tweaks', 'message', 'extra_in']);
    expect(nonceGen.field.find((f) => f['name'] === 'tweaks')).toMatchObject({ typeName: '.musig2.signer.v1.Tweak' });
    expect(nonceGen.field.find((f) => f['name'] === 'message')).toMatchObject({ proto3Optional: true, oneofIndex: 0 });
    expect(nonceGen.oneofDecl).toEqual([{ name: '_message' }]);
    // The name proto-loader would have invented is not served.
    const old = (await ask(stub, { file_by_filename: 'musig2_signer_v1.proto' })) as FileResponse;
    expect(old.error_response?.error_code).toBe(5); // NOT_FOUND
  });
});
