import { describe, expect, it } from 'vitest';
import { sessionPoolingProblem } from './session-pooling.ts';

describe('sessionPoolingProblem', () => {
  it('is null when the two connections keep their own backends (direct, or a pooler in session mode)', () => {
    expect(sessionPoolingProblem({ first: 101, other: 102, again: 101 })).toBeNull();
  });

  it('names a second connection given the first one\'s backend (a transaction pooler reusing the last one freed)', () => {
    expect(sessionPoolingProblem({ first: 101, other: 101, again: 102 })).toMatch(
      /^PostgreSQL is reached through a pooler that does not keep sessions \(a second connection was given the first one's server backend \(pid 101\)\).*pool_mode = session/,
    );
  });

  it('names a connection that moved to another backend between two transactions', () => {
    expect(sessionPoolingProblem({ first: 101, other: 102, again: 103 })).toMatch(/the first connection moved from server backend 101 to 103 between two transactions/);
  });
});
