import { describe, expect, it } from 'vitest';
import { decideHandling } from './handling-failures.ts';

function pgError(message: string, code?: string): Error {
  return Object.assign(new Error(message), code ? { code } : {});
}

describe('handling failures of stream commands', () => {
  it('quarantines a command PostgreSQL refuses (class 22/23) at once, as invalid_field', () => {
    expect(decideHandling(pgError('invalid byte sequence for encoding "UTF8": 0x00', '22021'), 1, 5)).toMatchObject({ action: 'quarantine', code: 'invalid_field' });
    expect(decideHandling(pgError('violates check constraint', '23514'), 1, 5)).toMatchObject({ action: 'quarantine', code: 'invalid_field' });
  });

  it('never quarantines while the database is away (dead-runner, docs/incidents.md), however often the entry was delivered', () => {
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
    for (const delivered of [1, 5, 50, 10_000]) {
      for (const error of outage) expect(decideHandling(error, delivered, 5)).toEqual({ action: 'retry' });
    }
  });

  it('never quarantines while the database is busy (a lock held for minutes: every statement timed out), however often the entry was delivered', () => {
    const busy = [
      pgError('canceling statement due to statement timeout', '57014'),
      pgError('canceling statement due to lock timeout', '55P03'),
      pgError('deadlock detected', '40P01'),
      pgError('could not serialize access due to concurrent update', '40001'),
    ];
    for (const delivered of [1, 5, 50, 10_000]) {
      for (const error of busy) expect(decideHandling(error, delivered, 5)).toEqual({ action: 'retry' });
    }
  });

  it('retries any other error until the entry was delivered N times (Redis counts), then quarantines it as handling_failed', () => {
    const poison = pgError('no deliveries to this recipient today', 'P0001');
    for (let delivered = 1; delivered < 5; delivered++) expect(decideHandling(poison, delivered, 5)).toEqual({ action: 'retry' });
    expect(decideHandling(poison, 5, 5)).toEqual({
      action: 'quarantine',
      code: 'handling_failed',
      detail: 'accepting the command failed 5 times; last: no deliveries to this recipient today (SQLSTATE P0001)',
    });
    // Delivered more often than that (an outage, a takeover): quarantined on its next failure.
    expect(decideHandling(new TypeError('cannot read properties of undefined'), 9, 5)).toMatchObject({ action: 'quarantine', code: 'handling_failed' });
  });
});
