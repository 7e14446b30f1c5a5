import { describe, expect, it } from 'vitest';
import type { Queryable } from '../aliases/resolve-recipient.ts';
import { mintApiToken } from './api-token.ts';
import { authenticateApiToken } from './manage-tokens.ts';

const record = { id: '7', name: 'billing', scopes: ['send'], producer: 'billing', createdAt: new Date(0), lastUsedAt: null, revokedAt: null };

/** A database whose first statement fails with `code` (or none) and answers the rest with `record`. */
function database(code: string | null): { db: Queryable; statements: string[] } {
  const statements: string[] = [];
  const query = async (text: string) => {
    statements.push(text);
    if (code && statements.length === 1) throw Object.assign(new Error(`pg ${code}`), { code, severity: 'ERROR' });
    return { rows: [record] };
  };
  return { db: { query } as unknown as Queryable, statements };
}

describe('authenticateApiToken', () => {
  it('records the last use in the same statement as the lookup', async () => {
    const { db, statements } = database(null);
    expect(await authenticateApiToken(db, mintApiToken().token)).toEqual(record);
    expect(statements).toHaveLength(1);
    expect(statements[0]).toMatch(/UPDATE mail\.api_tokens/);
  });

  it('still knows the token when its last use cannot be written: disk full, read-only', async () => {
    for (const code of ['53100', '25006']) {
      const { db, statements } = database(code);
      expect(await authenticateApiToken(db, mintApiToken().token), code).toEqual(record);
      expect(statements[1], code).not.toMatch(/UPDATE/);
    }
  });

  it('fails on anything else: the database away is the caller\'s 503', async () => {
    for (const code of ['57P01', '57014', '42P01']) {
      await expect(authenticateApiToken(database(code).db, mintApiToken().token), code).rejects.toMatchObject({ code });
    }
  });
});
