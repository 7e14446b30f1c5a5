// `npm start` for a newcomer: a fresh admin token, printed with a curl line to try at once. Only in
// development and only when the orchestrator asks (POSTERN_DEV_TOKEN=1); the previous development
// tokens are revoked first, so restarts do not pile up live admin credentials.
import { createApiToken, type Pool, type Queryable } from '@postern/shared';

export const DEV_TOKEN_FLAG = 'POSTERN_DEV_TOKEN';
export const DEV_PRODUCER = 'dev';

async function revokeDevTokens(db: Queryable): Promise<void> {
  await db.query("UPDATE mail.api_tokens SET revoked_at = now() WHERE name LIKE 'dev-%' AND revoked_at IS NULL");
}

export async function mintDevToken(pool: Pool, url: string, write: (text: string) => void): Promise<string> {
  await revokeDevTokens(pool);
  const name = `dev-${new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '')}`;
  // One producer for every development token, so a restart (a new token) keeps its idempotency keys.
  const { token } = await createApiToken(pool, { name, scopes: ['admin'], producer: DEV_PRODUCER });
  write(
    [
      '',
      `Postern GraphQL API: ${url} (open it in a browser for GraphiQL)`,
      `Development token "${name}" (scope admin, producer "${DEV_PRODUCER}"; revoked at the next start):`,
      '',
      `  ${token}`,
      '',
      'Try it:',
      `  curl -s ${url} -H 'content-type: application/json' -H 'authorization: Bearer ${token}' \\`,
      `    -d '{"query":"{ queueStats { depth { status count } oldestDueAgeMs deadLettersLast24h } }"}'`,
      '',
    ].join('\n'),
  );
  return token;
}
