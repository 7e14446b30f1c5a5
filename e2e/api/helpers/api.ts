// The API for the tests, in-process on a port the OS picks, on a database of the file's own; a
// small GraphQL-over-HTTP client; and token minting straight through the shared token code (the
// CLI's own path is tested as a process in processes.e2e.test.ts).
import path from 'node:path';
import { type ApiScope, createApiToken, loadConfig, type PosternConfig, revokeApiToken } from '@postern/shared';
import type pg from 'pg';
import { type Api, type ApiDeps, startApi } from '../../../apps/api/src/server.ts';
import { checkingKeysOnStop, createTestDatabase, keyCheckedLogger, type TestDatabase } from '../../harness/index.ts';

export const REPO_ROOT = path.resolve(import.meta.dirname, '..', '..', '..');
export const TEMPLATE_DIR = path.join(REPO_ROOT, 'templates');

export function apiConfig(dsn: string, env: Record<string, string> = {}): PosternConfig {
  return loadConfig(
    {
      MAIL_POSTGRES_PRIMARY_DSN: dsn,
      MAIL_API_HTTP_ADDR: '127.0.0.1:0',
      MAIL_TEMPLATE_DIR: TEMPLATE_DIR,
      MAIL_ENV: 'test',
      MAIL_SMTP_FROM: 'postern@postern.test',
      MAIL_LOG_LEVEL: process.env.POSTERN_E2E_LOG_LEVEL ?? 'silent',
      MAIL_POSTGRES_POOL_MAX: '4',
      MAIL_SHUTDOWN_TIMEOUT: '5s',
      ...env,
    },
    'api',
  );
}

export async function startTestApi(dsn: string, env: Record<string, string> = {}, deps: Partial<ApiDeps> = {}): Promise<Api> {
  const config = apiConfig(dsn, env);
  // Unless the test logs itself, stop() fails if a line named a key twice.
  if (deps.logger) return startApi(config, { ...deps, logger: deps.logger });
  const checked = keyCheckedLogger('api-e2e', config.logLevel);
  return checkingKeysOnStop(await startApi(config, { ...deps, logger: checked.logger }), checked);
}

/** What most API files start before their tests: a database of their own and an API on it. */
export async function openApiFile(label: string, env: Record<string, string> = {}): Promise<{ db: TestDatabase; api: Api }> {
  const db = await createTestDatabase(label);
  return { db, api: await startTestApi(db.dsn, env) };
}

/**
 * After the file's tests: stops the API and whatever else it started (each may be missing if its
 * start failed), drops the database even when a stop failed, then reports the first failure.
 */
export async function closeApiFile(db: TestDatabase | undefined, ...services: Array<{ stop(): Promise<void> } | undefined>): Promise<void> {
  const stopped = await Promise.allSettled(services.map((service) => service?.stop()));
  await db?.drop();
  const failed = stopped.find((outcome) => outcome.status === 'rejected');
  if (failed) throw failed.reason;
}

let tokenCounter = 0;

/** A token with these scopes; it sends as `producer` when given, else as its own "api:<name>". */
export async function mintToken(pool: pg.Pool, scopes: ApiScope[], name?: string, producer?: string): Promise<string> {
  tokenCounter += 1;
  const { token } = await createApiToken(pool, {
    name: name ?? `t${tokenCounter}-${scopes.join('_').replace(/:/g, '.')}`.slice(0, 64),
    scopes,
    producer: producer ?? null,
  });
  return token;
}

export async function mintRevokedToken(pool: pg.Pool, scopes: ApiScope[]): Promise<string> {
  tokenCounter += 1;
  const name = `revoked-${tokenCounter}`;
  const { token } = await createApiToken(pool, { name, scopes });
  await revokeApiToken(pool, name);
  return token;
}

export interface GraphqlResponse<T = Record<string, unknown>> {
  status: number;
  body: {
    data?: T | null;
    errors?: Array<{ message: string; extensions?: Record<string, unknown> }>;
  };
}

/** POSTs one operation as JSON (what every GraphQL client does). */
export async function gql<T = Record<string, unknown>>(
  api: Api | string,
  token: string | null,
  query: string,
  variables: Record<string, unknown> = {},
  headers: Record<string, string> = {},
): Promise<GraphqlResponse<T>> {
  const url = typeof api === 'string' ? api : api.url;
  const response = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/graphql-response+json, application/json',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...headers,
    },
    body: JSON.stringify({ query, variables }),
  });
  const text = await response.text();
  let body: GraphqlResponse<T>['body'];
  try {
    body = JSON.parse(text);
  } catch {
    throw new Error(`non-JSON answer ${response.status}: ${text.slice(0, 300)}`);
  }
  return { status: response.status, body };
}

/** The data of a successful operation; throws with the errors otherwise. */
// biome-ignore lint/suspicious/noExplicitAny: test assertions read the answer loosely; a mismatch fails the expect.
export async function gqlData<T = Record<string, any>>(
  api: Api | string,
  token: string,
  query: string,
  variables: Record<string, unknown> = {},
): Promise<T> {
  const answer = await gql<T>(api, token, query, variables);
  if (answer.status !== 200 || answer.body.errors?.length || !answer.body.data) {
    throw new Error(`GraphQL failed (${answer.status}): ${JSON.stringify(answer.body)}`);
  }
  return answer.body.data;
}

export function origin(api: Api): string {
  return `http://${api.http.host}:${api.http.port}`;
}
