import { describe, expect, it } from 'vitest';
import { isTransientDbError, mayPassOnRetry } from './db-errors.ts';

const pgError = (code: string) => Object.assign(new Error(`SQLSTATE ${code}`), { code });

describe('which database failures poison isolation may act on', () => {
  it('never isolates an item for a failure that is not its fault: outage, deadlock, serialisation, lock or statement timeout', () => {
    for (const code of ['ECONNRESET', '57P01', '08006', '40P01', '40001', '55P03', '57014', '53200']) {
      expect(mayPassOnRetry(pgError(code)), code).toBe(true);
    }
  });

  it('does for failures about the row: bad data, a constraint, a trigger raising', () => {
    for (const code of ['22021', '22P05', '23505', '23514', 'P0001', '42703']) {
      expect(mayPassOnRetry(pgError(code)), code).toBe(false);
      expect(isTransientDbError(pgError(code)), code).toBe(false);
    }
  });
});
