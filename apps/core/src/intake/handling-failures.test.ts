import { describe, expect, it } from 'vitest';
import { createHandlingFailures } from './handling-failures.ts';

function pgError(message: string, code?: string): Error {
  return Object.assign(new Error(message), code ? { code } : {});
}

describe('handling failures of stream commands', () => {
  it('quarantines a command PostgreSQL refuses (class 22/23) at once, as invalid_field', () => {
    const failures = createHandlingFailures(5);
    expect(failures.decide('1-0', pgError('invalid byte sequence for encoding "UTF8": 0x00', '22021'))).toMatchObject({ action: 'quarantine', code: 'invalid_field' });
    expect(failures.decide('1-1', pgError('violates check constraint', '23514'))).toMatchObject({ action: 'quarantine', code: 'invalid_field' });
  });

  it('never quarantines while the database is away (seed 001), however often', () => {
    const failures = createHandlingFailures(5);
    const outage = [
      pgError('connect ECONNREFUSED 127.0.0.1:5432', 'ECONNREFUSED'),
      pgError('read ECONNRESET', 'ECONNRESET'),
      pgError('terminating connection due to administrator command', '57P01'),
      pgError('the database system is starting up', '57P03'),
      pgError('connection failure', '08006'),
      pgError('protocol violation', '08P01'),
      pgError('Connection terminated unexpectedly'),
      pgError('timeout exceeded when trying to connect'),
      pgError('Connection terminated due to connection timeout'),
    ];
    for (let round = 0; round < 10; round++) {
      for (const error of outage) expect(failures.decide('2-0', error)).toEqual({ action: 'retry' });
    }
    expect(failures.count('2-0')).toBe(0);
  });

  it('retries any other error, then quarantines the entry as handling_failed with the error on the Nth failure', () => {
    const failures = createHandlingFailures(5);
    const poison = pgError('no deliveries to this recipient today', 'P0001');
    for (let i = 1; i < 5; i++) {
      expect(failures.decide('3-0', poison)).toEqual({ action: 'retry' });
      expect(failures.count('3-0')).toBe(i);
    }
    expect(failures.decide('3-0', poison)).toEqual({
      action: 'quarantine',
      code: 'handling_failed',
      detail: 'accepting the command failed 5 times; last: no deliveries to this recipient today (SQLSTATE P0001)',
    });
    expect(failures.count('3-0')).toBe(0);
  });

  it('counts per entry, and an entry that went through starts from zero', () => {
    const failures = createHandlingFailures(3);
    const bug = new TypeError('cannot read properties of undefined');
    failures.decide('4-0', bug);
    failures.decide('4-1', bug);
    failures.decide('4-0', bug);
    expect(failures.count('4-0')).toBe(2);
    expect(failures.count('4-1')).toBe(1);
    failures.forget('4-0');
    expect(failures.decide('4-0', bug)).toEqual({ action: 'retry' });
  });
});
