// Server reflection that shows the contract exactly as proto/musig2/signer/v1/signer.proto
// writes it. proto-loader's own descriptors (what @grpc/reflection would serve from the package
// definition) rename the file after its package, carry the camelCase names our JavaScript side
// uses, relative type names, and proto3 `optional` fields as plain oneofs. Tools that read
// reflection (grpcurl, grpcui, buf curl, generated clients) would then show names the
// documentation does not use, so this builds the FileDescriptorProto the way protoc does:
// the file's real path, the .proto's field names, fully qualified type names, and
// proto3_optional with its synthetic oneof. test/server/reflection.test.ts compares it with
// protoc's own output.
import { ReflectionService } from '@grpc/reflection';
import type { PackageDefinition } from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import descriptor from 'protobufjs/ext/descriptor/index.js';
import { AGGREGATOR_SERVICE, PACKAGE, PROTO_PATH, SIGNER_SERVICE } from '../protocol/contract.js';

/** The contract's path relative to the proto root, as `import` statements and protoc name it. */
export const PROTO_FILE_NAME = 'musig2/signer/v1/signer.proto';

// google.protobuf.FieldDescriptorProto.Type and .Label.
const SCALAR_TYPES: Record<string, number> = {
  double: 1, float: 2, int64: 3, uint64: 4, int32: 5, fixed64: 6, fixed32: 7, bool: 8, string: 9,
  bytes: 12, uint32: 13, sfixed32: 15, sfixed64: 16, sint32: 17, sint64: 18,
};
const TYPE_MESSAGE = 11;
const TYPE_ENUM = 14;
const LABEL_OPTIONAL = 1;
const LABEL_REPEATED = 3;

/** protoc's json_name: underscores dropped, the letter after each one upper-cased. */
function jsonName(name: string): string {
  return name.replace(/_+([a-z0-9])?/g, (_m, c: string | undefined) => (c ?? '').toUpperCase());
}

function isProto3Optional(field: protobuf.Field): boolean {
  return field.options?.['proto3_optional'] === true;
}

function fieldDescriptor(field: protobuf.Field, oneofIndex: Map<protobuf.OneOf, number>): Record<string, unknown> {
  if (field.map) throw new Error(`reflection: map field ${field.fullName} is not supported`);
  field.resolve();
  const out: Record<string, unknown> = {
    name: field.name,
    number: field.id,
    label: field.repeated ? LABEL_REPEATED : LABEL_OPTIONAL,
    jsonName: jsonName(field.name),
  };
  const scalar = SCALAR_TYPES[field.type];
  if (scalar !== undefined) {
    out['type'] = scalar;
  } else if (field.resolvedType instanceof protobuf.Type) {
    out['type'] = TYPE_MESSAGE;
    out['typeName'] = field.resolvedType.fullName; // fully qualified, with the leading dot
  } else if (field.resolvedType instanceof protobuf.Enum) {
    out['type'] = TYPE_ENUM;
    out['typeName'] = field.resolvedType.fullName;
  } else {
    throw new Error(`reflection: cannot describe the type of ${field.fullName}`);
  }
  if (field.partOf) out['oneofIndex'] = oneofIndex.get(field.partOf);
  if (isProto3Optional(field)) out['proto3Optional'] = true;
  return out;
}

function enumDescriptor(e: protobuf.Enum): Record<string, unknown> {
  return { name: e.name, value: Object.entries(e.values).map(([name, number]) => ({ name, number })) };
}

function messageDescriptor(type: protobuf.Type): Record<string, unknown> {
  // protoc lists real oneofs first, then the synthetic ones of proto3 `optional` fields.
  const synthetic = (o: protobuf.OneOf): boolean => o.fieldsArray.length === 1 && isProto3Optional(o.fieldsArray[0]!);
  const oneofs = [...type.oneofsArray.filter((o) => !synthetic(o)), ...type.oneofsArray.filter(synthetic)];
  const oneofIndex = new Map(oneofs.map((o, i) => [o, i]));
  const out: Record<string, unknown> = {
    name: type.name,
    field: type.fieldsArray.map((f) => fieldDescriptor(f, oneofIndex)),
  };
  const nested = type.nestedArray.filter((n) => n instanceof protobuf.Type);
  const enums = type.nestedArray.filter((n) => n instanceof protobuf.Enum);
  if (nested.length > 0) out['nestedType'] = nested.map((n) => messageDescriptor(n as protobuf.Type));
  if (enums.length > 0) out['enumType'] = enums.map((n) => enumDescriptor(n as protobuf.Enum));
  if (oneofs.length > 0) out['oneofDecl'] = oneofs.map((o) => ({ name: o.name }));
  return out;
}

function serviceDescriptor(service: protobuf.Service): Record<string, unknown> {
  return {
    name: service.name,
    method: service.methodsArray.map((m) => {
      m.resolve();
      const out: Record<string, unknown> = {
        name: m.name,
        inputType: m.resolvedRequestType!.fullName,
        outputType: m.resolvedResponseType!.fullName,
      };
      if (m.requestStream) out['clientStreaming'] = true;
      if (m.responseStream) out['serverStreaming'] = true;
      return out;
    }),
  };
}

/** The contract's FileDescriptorProto, serialized, as protoc would write it (no source info). */
export function contractFileDescriptor(protoPath: string = PROTO_PATH, fileName: string = PROTO_FILE_NAME): Uint8Array {
  const root = new protobuf.Root().loadSync(protoPath, { keepCase: true });
  root.resolveAll();
  const ns = root.lookup(PACKAGE);
  if (!(ns instanceof protobuf.Namespace)) throw new Error(`reflection: ${protoPath} does not declare package ${PACKAGE}`);
  const members = ns.nestedArray;
  const file = {
    name: fileName,
    package: PACKAGE,
    messageType: members.filter((n) => n instanceof protobuf.Type).map((n) => messageDescriptor(n as protobuf.Type)),
    enumType: members.filter((n) => n instanceof protobuf.Enum).map((n) => enumDescriptor(n as protobuf.Enum)),
    service: members.filter((n) => n instanceof protobuf.Service).map((n) => serviceDescriptor(n as protobuf.Service)),
    syntax: 'proto3',
  };
  const message = descriptor.FileDescriptorProto.fromObject(file);
  return descriptor.FileDescriptorProto.encode(message).finish();
}

/** A reflection service (v1 and v1alpha) that serves the contract file as written. */
export function contractReflectionService(): ReflectionService {
  const fileDescriptorProtos = [Buffer.from(contractFileDescriptor())];
  // @grpc/reflection reads only `fileDescriptorProtos` from the package definition; the
  // services it lists are the ones the file declares.
  const pkg = {
    [SIGNER_SERVICE]: { format: 'Protocol Buffer 3 DescriptorProto', type: {}, fileDescriptorProtos },
    [AGGREGATOR_SERVICE]: { format: 'Protocol Buffer 3 DescriptorProto', type: {}, fileDescriptorProtos },
  } as unknown as PackageDefinition;
  return new ReflectionService(pkg);
}
