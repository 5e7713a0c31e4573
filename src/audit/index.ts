// The audit log: hash-chained JSON lines, the writer (group commit, fail closed) and the verifier.
export { AuditLog, AuditLogCorruptError, AuditUnavailableError } from './log.js';
export type { AuditLogOptions } from './log.js';
export { AUDIT_HASH_DOMAIN, GENESIS_HASH, canonical, chainRecord, recordHash, recordLine, sha256Hex } from './record.js';
export type { AuditFields, AuditRecord, AuditValue } from './record.js';
export { checkRecordShape, verifyAuditFile, verifyAuditText } from './verify.js';
export type { VerifyResult } from './verify.js';
