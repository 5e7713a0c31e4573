// The audit log: JSON lines chained by a MAC under the token's audit key, the writer (one
// writer per file, group commit, fail closed, anchored in the ledger) and the verifiers.
export { AuditAnchorError, AuditLog, AuditLogCorruptError, AuditUnavailableError } from './log.js';
export type { AuditAnchorStore, AuditLogOptions } from './log.js';
export { AuditLockedError, lockAuditLog } from './lock.js';
export type { AuditLock } from './lock.js';
export { AUDIT_MAC_DOMAIN, KEYED_GENESIS, chainKeyedRecord, checkKeyedRecord, isUnkeyedLog, macInput, newChainId, verifyKeyedText } from './keyed.js';
export type { AuditHead, AuditKey, AuditMac, KeyedRecord, KeyedVerifyResult } from './keyed.js';
export { AUDIT_HASH_DOMAIN, GENESIS_HASH, canonical, chainRecord, recordHash, recordLine, sha256Hex } from './record.js';
export type { AuditFields, AuditRecord, AuditValue } from './record.js';
export { checkRecordShape, verifyAuditFile, verifyAuditText } from './verify.js';
export type { VerifyResult } from './verify.js';
