// A real PgBouncer between Postern and PostgreSQL, as operators put one (docs/deploy.md, "A
// connection pooler in front of PostgreSQL").
//
// pool_mode = session, the mode deploy.md asks for: every process must connect, each session with
// the timeouts Postern gives it, and mail must go from the edge through the engine. Postern used to
// send those timeouts as startup parameters, which PgBouncer refuses (`unsupported startup
// parameter: idle_in_transaction_session_timeout`): no process could connect through it at all.
//
// pool_mode = transaction, the mode deploy.md forbids: a session's named statements, its LISTEN
// and the migrations' advisory lock are lost between transactions. Postern used to start there and
// stay ready while a share of its recipient lookups failed with `prepared statement
// "postern_resolve_recipients" already exists` (451). Every process now refuses to start, with the
// reason, before it migrates.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { createAlias, createDomain, createLogger, createPool, prepareDatabase } from '@postern/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import type { Edge } from '../../apps/mta/src/edge.ts';
import { repoRoot, startTestEngine, statusesOfDomain } from '../core/helpers/engine.ts';
import { createTestDatabase, type PgBouncer, readyzOf, startPgBouncer, type TestDatabase, waitFor } from '../harness/index.ts';
import { openSession, QUEUED, rcptReply, startTestEdge } from '../mta/helpers/edge.ts';
import { sendMail } from '../mta/helpers/smtp-client.ts';

const MESSAGES = 30;

let db: TestDatabase;
let bouncer: PgBouncer;
let edge: Edge | undefined;
let engine: Engine | undefined;

beforeAll(async () => {
  db = await createTestDatabase('pgbouncer');
  await createDomain(db.pool, 'postern.test');
  await createAlias(db.pool, { domain: 'postern.test', localPart: 'desk', kind: 'forward', targets: ['desk@inbox.test'] });
  bouncer = await startPgBouncer([db.name]);
}, 60_000);

afterAll(async () => {
  await Promise.allSettled([edge?.stop(), engine?.stop()]);
  await bouncer?.close();
  await db?.drop();
}, 60_000);

/** `postern migrate` as an operator runs it: its exit code and what it printed. */
function posternMigrate(dsn: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(repoRoot, 'bin/postern.ts'), 'migrate'], {
      env: { ...process.env, MAIL_POSTGRES_PRIMARY_DSN: dsn, MAIL_LOG_FORMAT: 'json', MAIL_LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.once('exit', (code) => resolve({ code, output }));
  });
}

describe('PgBouncer with pool_mode = session', () => {
  it("gives each pooled session Postern's timeouts", async () => {
    const pool = createPool({
      dsn: bouncer.dsn(db.name, 'session'),
      applicationName: 'e2e-pgbouncer',
      statementTimeoutMs: 4_321,
      logger: createLogger('e2e-pgbouncer', 'silent'),
    });
    try {
      const statement = await pool.query<{ statement_timeout: string }>('SHOW statement_timeout');
      const idle = await pool.query<{ idle_in_transaction_session_timeout: string }>('SHOW idle_in_transaction_session_timeout');
      expect(statement.rows[0]?.statement_timeout, bouncer.log()).toBe('4321ms');
      expect(idle.rows[0]?.idle_in_transaction_session_timeout).toBe('30s');
    } finally {
      await pool.end();
    }
  });

  it('passes the start check, and mail goes from the edge through the engine: each message once', async () => {
    const dsn = bouncer.dsn(db.name, 'session');
    await expect(prepareDatabase({ dsn, logger: createLogger('e2e-pgbouncer', 'silent') })).resolves.toMatchObject({ newer: [] });
    [edge, engine] = await Promise.all([startTestEdge(dsn), startTestEngine(dsn, { MAIL_SMTP_MODE: 'stub' })]);
    expect((await readyzOf(edge)).status).toBe(200);
    expect((await readyzOf(engine)).status).toBe(200);

    // PgBouncer logs in to PostgreSQL one server connection at a time per pool: a cold start's first
    // lookups can wait past their deadline (451, docs/deploy.md). Counted from a warm pool.
    await waitFor('an RCPT answered 250', () => rcptReply(edge as Edge, 'desk@postern.test'), (reply) => reply.code === 250, { timeoutMs: 30_000 });
    // Five senders at once, so the edge's pools hold several sessions, each with its own statements.
    const replies: string[] = [];
    await Promise.all(
      Array.from({ length: 5 }, async (_, sender) => {
        for (let i = sender; i < MESSAGES; i += 5) {
          const message = Buffer.from(`From: <s${i}@outside.test>\r\nSubject: through PgBouncer ${i}\r\nMessage-ID: <pgb-${i}@outside.test>\r\n\r\nbody ${i}\r\n`);
          const client = await openSession(edge as Edge);
          try {
            const sent = await sendMail(client, { from: `s${i}@outside.test`, to: ['desk@postern.test'], message });
            replies.push(sent.final?.raw ?? [sent.mail, ...sent.rcpts, sent.data].map((reply) => reply?.raw).join(' / '));
          } finally {
            await client.quit();
          }
        }
      }),
    );
    expect(replies.filter((reply) => QUEUED.test(reply)), replies.join('\n')).toHaveLength(MESSAGES);
    // The account: every accepted message is one delivery, and every delivery is sent.
    const statuses = await waitFor(`${MESSAGES} deliveries sent`, () => statusesOfDomain(db.pool, 'inbox.test'), (seen) => seen.sent === MESSAGES, {
      timeoutMs: 60_000,
      intervalMs: 250,
    });
    expect(statuses).toEqual({ sent: MESSAGES });
  }, 120_000);
});

describe('PgBouncer with pool_mode = transaction', () => {
  it('is refused at start with the reason, before any migration', async () => {
    const dsn = bouncer.dsn(db.name, 'transaction');
    await expect(prepareDatabase({ dsn, logger: createLogger('e2e-pgbouncer', 'silent') })).rejects.toThrow(
      /reached through a pooler that does not keep sessions .*pool_mode = session/,
    );
    const migrate = await posternMigrate(dsn);
    expect(migrate.code).toBe(1);
    expect(migrate.output).toMatch(/"level":60.*reached through a pooler that does not keep sessions/);
  }, 60_000);
});
