// No ledger, for a stateless final signer (`serve --role final-signer --ledger none`): BIP327
// DeterministicSign keeps no state, so the only thing a ledger adds on that path is the record of
// what was signed. This one records nothing, refuses every random-nonce write (a final signer
// makes no random nonce) and every velocity charge (a policy with per_period needs a real ledger,
// and the daemon refuses to start without one). It anchors no audit chain either: serve opens the
// audit log without an anchor, and these methods refuse rather than answer "no head" or "not
// moved" (the latter would read as another writer on the chain: a fork alarm).
import { LedgerUnavailableError } from './errors.js';
import type { MarkUsedResult, NonceLedger, NonceRecord, RecordDeterministicResult } from './types.js';

const refuse = (what: string) => Promise.reject(new LedgerUnavailableError(`no ledger (--ledger none): ${what} needs one`));

export class NoLedger implements NonceLedger {
  private closed = false;

  recordNonce(): Promise<void> {
    return refuse('a random nonce');
  }

  markUsed(): Promise<MarkUsedResult> {
    return refuse('a random nonce');
  }

  storePsig(): Promise<void> {
    return refuse('a random nonce');
  }

  async recordDeterministic(): Promise<RecordDeterministicResult> {
    if (this.closed) return refuse('signing after close');
    return { outcome: 'recorded' };
  }

  spentInPeriod(): Promise<bigint> {
    return refuse('velocity');
  }

  markUsedCharging(): Promise<MarkUsedResult[]> {
    return refuse('velocity');
  }

  recordDeterministicCharging(): Promise<RecordDeterministicResult[]> {
    return refuse('velocity');
  }

  recordAuditHead(): Promise<boolean> {
    return refuse('an audit anchor');
  }

  auditHead(): Promise<{ seq: number; mac: string } | null> {
    return refuse('an audit anchor');
  }

  async findByPubnonce(): Promise<NonceRecord | null> {
    return null;
  }

  async findBySession(): Promise<NonceRecord | null> {
    return null;
  }

  async healthy(): Promise<boolean> {
    return !this.closed;
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
