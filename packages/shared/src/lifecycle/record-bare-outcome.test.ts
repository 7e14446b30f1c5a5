import { describe, expect, it } from 'vitest';
import { MAX_REASON_CHARS } from './fail-for-good.ts';
import { unrecordableOutcome } from './record-bare-outcome.ts';

describe('an outcome recorded bare', () => {
  it('an outcome PostgreSQL refuses even alone keeps what is known and records the refusal as its reason', () => {
    const refusal = Object.assign(new Error('invalid byte sequence for encoding "UTF8": 0x00'), { code: '22021' });
    expect(unrecordableOutcome({ status: 'sent', lastError: null }, refusal)).toEqual({
      status: 'sent',
      lastError: 'could not record outcome (sent): invalid byte sequence for encoding "UTF8": 0x00 (SQLSTATE 22021)',
    });
    expect(unrecordableOutcome({ status: 'failed', lastError: 'bad_recipient: 550' }, refusal)).toMatchObject({ status: 'failed' });
    expect(unrecordableOutcome({ status: 'dead_letter', lastError: 'x' }, refusal)).toMatchObject({ status: 'dead_letter' });
    expect(unrecordableOutcome({ status: 'suppressed', lastError: 'x' }, refusal)).toMatchObject({ status: 'suppressed' });
    // A retry would come back to fail the same way: it ends, visibly, as a dead letter.
    expect(unrecordableOutcome({ status: 'retrying', lastError: 'greylisted' }, refusal)).toMatchObject({ status: 'dead_letter' });
    const long = unrecordableOutcome({ status: 'failed', lastError: '\u0000'.repeat(5_000) }, refusal);
    expect(long.lastError.length).toBeLessThanOrEqual(MAX_REASON_CHARS);
    expect(long.lastError).not.toContain('\u0000');
  });
});
