import { describe, expect, it } from 'vitest';
import { describeLedger } from '../../src/ledger/index.js';

describe('describeLedger', () => {
  it('masks a PostgreSQL password and keeps the rest', () => {
    const shown = describeLedger('postgres://signer:s3cret-pw@db.internal:5432/ledger');
    expect(shown).not.toContain('s3cret-pw');
    expect(shown).toBe('postgres://signer:***@db.internal:5432/ledger');
  });

  it('leaves a URL without a password and a sqlite path unchanged', () => {
    expect(describeLedger('postgresql://signer@127.0.0.1/ledger')).toBe('postgresql://signer@127.0.0.1/ledger');
    expect(describeLedger('sqlite:/var/lib/musig2/ledger.sqlite')).toBe('sqlite:/var/lib/musig2/ledger.sqlite');
  });

  it('never echoes an unparseable PostgreSQL URL', () => {
    expect(describeLedger('postgres://u:pw@[bad')).toBe('postgres://(unparseable URL)');
  });
});
