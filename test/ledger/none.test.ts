// The no-ledger stand-in of a stateless final signer (`--ledger none`): it records deterministic
// signatures as nothing, and refuses whatever needs state (random nonces, velocity, the audit
// anchor) as unavailable, never with an answer that reads as a fact about stored rows.
import { describe, expect, it } from 'vitest';
import { LedgerUnavailableError, NoLedger, type NonceLedger } from '../../src/ledger/index.js';
import { rand } from './contract.js';

describe('NoLedger', () => {
  it('records deterministic signatures (keeping nothing) and refuses random nonces, velocity and the audit anchor', async () => {
    const l: NonceLedger = new NoLedger(); // called as the signer calls it, through the interface
    const entry = { keyId: 'k', pubnonce: rand(66), digest: rand(32), psig: rand(32) };
    expect(await l.recordDeterministic(entry)).toEqual({ outcome: 'recorded' });
    expect(await l.findByPubnonce(entry.pubnonce)).toBeNull();
    await expect(l.recordNonce({ keyId: 'k', pubnonce: rand(66), sessionId: rand(32) })).rejects.toBeInstanceOf(LedgerUnavailableError);
    await expect(l.spentInPeriod('k', 'daily', 0)).rejects.toBeInstanceOf(LedgerUnavailableError);
    // Not null and not false: "no head" would skip the start check, "not moved" would read as a fork.
    await expect(l.auditHead('00'.repeat(16))).rejects.toThrow(/audit anchor/);
    await expect(l.recordAuditHead({ chain: '00'.repeat(16), seq: 1, mac: '00'.repeat(32) })).rejects.toBeInstanceOf(LedgerUnavailableError);
    expect(await l.healthy()).toBe(true);
    await l.close();
    expect(await l.healthy()).toBe(false);
    await expect(l.recordDeterministic(entry)).rejects.toBeInstanceOf(LedgerUnavailableError);
  });
});
