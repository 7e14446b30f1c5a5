import { describe, expect, it } from 'vitest';
import { isDiskFullDbError, isRetryableDbError, isTransientDbError, isWriteRefusedDbError, NOT_PRIMARY_CODE } from './db-errors.ts';

const pgError = (code: string) => Object.assign(new Error(`pg ${code}`), { code });

describe('db-errors', () => {
  it('retries every transient class when recording an outcome', () => {
    for (const code of ['57014', '55P03', '40P01', '40001', '57P01', '57P03', '08006', '08P01', '53300', 'ECONNRESET']) {
      expect(isRetryableDbError(pgError(code)), code).toBe(true);
    }
    expect(isRetryableDbError(new Error('Connection terminated unexpectedly'))).toBe(true);
    expect(isRetryableDbError(new Error('Query read timeout'))).toBe(true);
  });

  it('does not retry a statement that is wrong', () => {
    for (const code of ['22021', '23505', '42P01', '42703', 'P0001']) expect(isRetryableDbError(pgError(code)), code).toBe(false);
    expect(isRetryableDbError(new Error('Cannot use a pool after calling end on the pool'))).toBe(false);
  });

  it('counts only an unreachable database as "away" (stream intake waits those out for ever)', () => {
    expect(isTransientDbError(pgError('57P01'))).toBe(true);
    // A database that takes no writes now (read-only, or a standby's connection refused) is away
    // too: the same write lands once it takes them again.
    expect(isTransientDbError(pgError('25006'))).toBe(true);
    expect(isTransientDbError(pgError(NOT_PRIMARY_CODE))).toBe(true);
    // Not the rest of class 25: those are a statement issued in the wrong transaction state.
    expect(isRetryableDbError(pgError('25P02'))).toBe(false);
    expect(isTransientDbError(pgError('57014'))).toBe(false);
    expect(isTransientDbError(pgError('40P01'))).toBe(false);
  });

  it('counts a new connection refused before any statement as away: a certificate, a login, a server without TLS', () => {
    // Until an operator renews the certificate or names its CA, rotates the password back or
    // edits pg_hba.conf: no command waiting for the connection is to blame.
    for (const code of ['SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'CERT_HAS_EXPIRED', 'ERR_TLS_CERT_ALTNAME_INVALID', '28P01', '28000']) {
      expect(isTransientDbError(pgError(code)), code).toBe(true);
    }
    expect(isTransientDbError(new Error('The server does not support SSL connections'))).toBe(true);
  });
});

describe('a full disk', () => {
  it('is 53100 alone, and away like the rest of class 53: the same write lands once space is freed', () => {
    expect(isDiskFullDbError(pgError('53100'))).toBe(true);
    expect(isTransientDbError(pgError('53100'))).toBe(true);
    for (const code of ['53200', '53300', '58030', 'ENOSPC']) expect(isDiskFullDbError(pgError(code)), code).toBe(false);
    expect(isDiskFullDbError(new Error('No space left on device'))).toBe(false);
  });

  it('ends new sessions with FATAL XX000 "could not write init file": away, not the statement\'s fault', () => {
    const initFile = Object.assign(new Error('could not write init file'), { code: 'XX000', severity: 'FATAL' });
    expect(isTransientDbError(initFile)).toBe(true);
    expect(isTransientDbError(Object.assign(new Error('PANIC'), { code: '53100', severity: 'PANIC' }))).toBe(true);
    // The same code as an ERROR is a bug in the statement's path: not waited out for ever.
    expect(isTransientDbError(Object.assign(new Error('cache lookup failed'), { code: 'XX000', severity: 'ERROR' }))).toBe(false);
  });

  it('is, with read-only, a server that answers reads and takes no write now', () => {
    for (const code of ['53100', '25006']) expect(isWriteRefusedDbError(pgError(code)), code).toBe(true);
    for (const code of ['57P01', 'ECONNREFUSED', '53300', '57014', '23505']) expect(isWriteRefusedDbError(pgError(code)), code).toBe(false);
  });
});

describe('which database failures poison isolation may act on', () => {
  it('never isolates an item for a failure that is not its fault: outage, deadlock, serialisation, lock or statement timeout', () => {
    for (const code of ['ECONNRESET', '57P01', '08006', '40P01', '40001', '55P03', '57014', '53200']) {
      expect(isRetryableDbError(pgError(code)), code).toBe(true);
    }
  });

  it('does for failures about the row: bad data, a constraint, a trigger raising', () => {
    for (const code of ['22021', '22P05', '23505', '23514', 'P0001', '42703']) {
      expect(isRetryableDbError(pgError(code)), code).toBe(false);
      expect(isTransientDbError(pgError(code)), code).toBe(false);
    }
  });
});
