// `postern secrets` names the keys it was given when a sealed value opens with none of them: "either
// key" said to an operator who set only MAIL_SECRETS_KEY sent them looking for a second key.
import { randomBytes } from 'node:crypto';
import { type Pool, type SecretsKey, sealRoutePassword, secretsKeyOf } from '@postern/shared';
import { describe, expect, it } from 'vitest';
import { secretsCommand, type WithSecrets } from './secrets-commands.ts';

const [currentKey, previousKey, strayKey] = [randomBytes(32), randomBytes(32), randomBytes(32)];

/** A database whose one sealed value, the password of the route of stray.example.test, opens with
 *  no key the command is given; run with `secretsKey` as its configuration. */
function withStrayRoute(secretsKey: SecretsKey): WithSecrets {
  const sealed = sealRoutePassword(secretsKeyOf(strayKey), 'stray.example.test', 'stray', 'p');
  const query = async (sql: string) => ({
    rows: sql.includes('FROM mail.routes') ? [{ id: '1', label: 'stray.example.test', domain: 'stray.example.test', name: 'stray', sealed }] : [],
  });
  // The reseal runs in a transaction on a client of the pool.
  const pool = { query, connect: async () => ({ query, release: () => {} }) } as unknown as Pool;
  return (use) => use(pool, secretsKey);
}

async function run(action: string, secretsKey: SecretsKey): Promise<{ code: number; err: string[] }> {
  const err: string[] = [];
  const code = await secretsCommand([action], { out: () => {}, err: (line) => err.push(line) }, withStrayRoute(secretsKey));
  return { code, err };
}

describe('postern secrets, a value no key opens', () => {
  it('with MAIL_SECRETS_KEY alone, names MAIL_SECRETS_KEY alone', async () => {
    for (const action of ['status', 'reseal']) {
      const { code, err } = await run(action, secretsKeyOf(currentKey));
      expect(code, action).toBe(1);
      expect(err[0], action).toMatch(/^cannot be opened with MAIL_SECRETS_KEY: route password stray\.example\.test: wrong key/);
    }
  });

  it('with MAIL_SECRETS_KEY_PREVIOUS beside it, names both keys', async () => {
    for (const action of ['status', 'reseal']) {
      const { code, err } = await run(action, secretsKeyOf(currentKey, previousKey));
      expect(code, action).toBe(1);
      expect(err[0], action).toMatch(/^cannot be opened with MAIL_SECRETS_KEY or MAIL_SECRETS_KEY_PREVIOUS: route password stray\.example\.test: wrong key/);
    }
  });
});
