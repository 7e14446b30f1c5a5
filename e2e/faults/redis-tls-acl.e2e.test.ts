// Redis as managed services and careful operators run it: TLS only (rediss://, a private CA) and a
// least-privilege ACL user per role. The ACL lines are docs/deploy.md's own ("A Redis user for the
// engines"), read from it and run as an operator pastes them, so the page cannot drift from what
// was tested:
//  - an engine as `postern-engine` and a producer as `postern-producer`, over TLS: every command
//    delivered once, counted at the relay, and Redis's ACL LOG empty (nothing the engine tried was
//    refused: tracking, the script, CONFIG GET all allowed);
//  - each permission of the engine's line taken away in turn: the engine says so — it refuses to
//    start naming the command, or /readyz is 503 with Redis's NOPERM naming it, or (the optional
//    ones) a warning says what it does instead — never a silent stall;
//  - a server certificate the engine does not trust: it refuses to start, saying so and where the
//    CA goes.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { explainStartupFailure } from '@postern/shared';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import { repoRoot, startTestEngine } from '../core/helpers/engine.ts';
import { type FaultSink, startFaultSink } from '../harness/fault-sink.ts';
import { captureLogs, createTestDatabase, readyzOf, type TestDatabase, waitFor } from '../harness/index.ts';
import { cellEngineEnv, expectEverythingDelivered, type FaultCell, openCell } from './helpers/cell.ts';
import { engineNote } from './helpers/engine-facts.ts';
import { FAULT_SOURCE, faultCommand, produceAll } from './helpers/stream-producer.ts';
import { startTlsRedis, type TlsRedis } from './helpers/tls-redis.ts';

const ENGINE_PASSWORD = 'engine-secret-1';
const PRODUCER_PASSWORD = 'producer-secret-1';

/** The arguments after `ACL SETUSER` of the line docs/deploy.md gives for `user`, its password in. */
function documentedAcl(user: string): string[] {
  const text = readFileSync(path.join(repoRoot, 'docs/deploy.md'), 'utf8');
  const line = text.split('\n').find((candidate) => candidate.startsWith(`ACL SETUSER ${user} `));
  if (!line) throw new Error(`docs/deploy.md has no "ACL SETUSER ${user} ..." line`);
  return line
    .trim()
    .split(/\s+/)
    .slice(2)
    .map((word) => word.replace('>ENGINE_PASSWORD', `>${ENGINE_PASSWORD}`).replace('>PRODUCER_PASSWORD', `>${PRODUCER_PASSWORD}`));
}

/** The permissions the engine may go without, and what it says instead (docs/deploy.md). */
const OPTIONAL: Record<string, RegExp> = {
  '+config|get': /Redis settings could not be read \(CONFIG GET refused\)/,
  '+client|tracking': /Redis client tracking refused; polling the stream every 100 ms/,
  '+client|trackinginfo': /Redis client tracking refused; polling the stream every 100 ms/,
  '+subscribe': /subscribing to stream notifications failed; polling/,
  '&__redis__:invalidate': /subscribing to stream notifications failed; polling/,
  '+client|id': /subscribing to stream notifications failed; polling/,
  // The removal of handled entries (stream-trim.ts) and the stream's length gauge: intake goes on.
  '+exists': /removing handled entries from the stream failed; intake goes on/,
  // Works without it; whether a removal reaches its XTRIM while the cell runs depends on what the
  // stream holds before the cell's entries (nothing to remove: no XTRIM), so no line is awaited.
  '+xtrim': /./,
  '+xlen': /Redis memory figures could not be sampled/,
  // ioredis's own: CLIENT SETNAME refused is passed over (the connection has no name in CLIENT
  // LIST); INFO refused skips its wait for a Redis still loading its data (and prints a warning).
  '+client|setname': /./,
  '+info': /./,
};

/** The permissions only a rarer path needs, which this run does not take: the engine works
 *  without them here. docs/deploy.md says when each is needed. */
const RARE = new Set(['+xpending', '+xrange']);

let redis: TlsRedis;
let db: TestDatabase;
let sink: FaultSink;
let producer: Redis;
const engines: Engine[] = [];

beforeAll(async () => {
  // One at a time: what started before a failure is stopped by afterAll.
  redis = await startTlsRedis();
  db = await createTestDatabase('redis-tls-acl');
  sink = await startFaultSink();
  await redis.admin.call('ACL', 'SETUSER', ...documentedAcl('postern-producer'));
  producer = redis.connect('postern-producer', PRODUCER_PASSWORD);
}, 400_000);

afterAll(async () => {
  await Promise.allSettled(engines.map((engine) => engine.stop()));
  producer?.disconnect();
  await sink?.close();
  await db?.drop();
  await redis?.close();
});

/** An engine as `user` over TLS, its lines captured. */
async function startEngineAs(cell: FaultCell, user: string, extra: Record<string, string> = {}) {
  const logs = captureLogs('core-acl');
  const engine = await startTestEngine(
    db.dsn,
    cellEngineEnv(cell, {
      MAIL_REDIS_USERNAME: user,
      MAIL_REDIS_PASSWORD: ENGINE_PASSWORD,
      MAIL_REDIS_TLS_CA: redis.ca.caFile,
      // Connecting (to PostgreSQL, and the TLS handshake with Redis) on a loaded machine takes
      // longer than the cells' 2 s.
      MAIL_POSTGRES_CONNECT_TIMEOUT: '15s',
      ...extra,
    }),
    { logger: logs.logger },
  );
  engines.push(engine);
  return { engine, logs };
}

/** The cell's stream commands the engine sent. */
async function sentOf(cell: FaultCell): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM mail.deliveries WHERE source = $1 AND idempotency_key LIKE $2 AND status = 'sent'",
    [FAULT_SOURCE, `${cell.cell}-s%`],
  );
  return rows[0]?.n ?? 0;
}

const said = (lines: Array<Record<string, unknown>>) => lines.map((line) => String(line.msg ?? '')).join('\n');

describe('Redis over TLS with the documented ACL users', () => {
  it('an engine as postern-engine, a producer as postern-producer: every command delivered once, nothing refused', async () => {
    const cell = await openCell({ cell: 'redis-acl', n: 100, dsn: db.dsn, pool: db.pool, redis: { addr: redis.addr, client: redis.admin }, sink });
    await redis.admin.call('ACL', 'SETUSER', ...documentedAcl('postern-engine'));
    await redis.admin.call('ACL', 'LOG', 'RESET');
    const { engine, logs } = await startEngineAs(cell, 'postern-engine');
    const commands = Array.from({ length: cell.n }, (_, i) => faultCommand(cell.cell, i));
    const produced = await produceAll(producer, cell.cell, commands, { deadlineMs: 120_000, paceMs: 10 });
    await expectEverythingDelivered(cell, { sent: [], produced }, {
      faultEndedAt: Date.now(),
      settleMs: 90_000,
      duplicateBound: 'zero',
      annotate: engineNote([engine]),
      note: 'rediss://, engine and producer as the ACL users of docs/deploy.md',
    });
    expect((await readyzOf(engine)).status).toBe(200);
    // Nothing either user tried was refused, ioredis's connection setup included.
    expect(await redis.admin.call('ACL', 'LOG')).toEqual([]);
    expect(said(logs.lines)).toMatch(/waiting for new stream entries by Redis client tracking/);
    expect(said(logs.lines)).not.toMatch(/refused|could not be read|failed; polling/);
    await engine.stop();
  }, 300_000);

  it('each permission of the engine line taken away: the engine says which, never a silent stall', async () => {
    // Without its user name: each user here is another.
    const line = documentedAcl('postern-engine').slice(1);
    const permissions = line.filter((word) => word.startsWith('+') || word.startsWith('&'));
    const seen: string[] = [];
    for (const [index, permission] of permissions.entries()) {
      const user = `postern-engine-${index}`;
      // The earlier cells' groups go: a group nobody reads any more holds back the removal of
      // handled entries (stream-trim.ts), and its XTRIM would never be tried.
      const groups = (await redis.admin.call('XINFO', 'GROUPS', 'mail:delivery_commands').catch(() => [])) as unknown[][];
      for (const group of groups) await redis.admin.call('XGROUP', 'DESTROY', 'mail:delivery_commands', String(group[1]));
      await redis.admin.call('ACL', 'SETUSER', user, ...line.filter((word) => word !== permission));
      const cell = await openCell({ cell: `redis-acl-${index}`, n: 3, dsn: db.dsn, pool: db.pool, redis: { addr: redis.addr, client: redis.admin }, sink });
      const command = permission.replace(/^[+&]/, '');
      // Redis forgets the script, as after a restart: EVALSHA's NOSCRIPT makes ioredis send EVAL.
      await redis.admin.call('SCRIPT', 'FLUSH');
      let started: Awaited<ReturnType<typeof startEngineAs>>;
      try {
        started = await startEngineAs(cell, user, { MAIL_REDIS_CONSUMER_GROUP: `acl-${index}` });
      } catch (error) {
        const explained = explainStartupFailure(error);
        expect(explained?.what, `${permission}: ${(error as Error).message}`).toBe('the Redis user may not run a command the engine needs');
        expect(explained?.why).toContain(command);
        seen.push(`${permission}: refused to start (${explained?.why})`);
        continue;
      }
      const { engine, logs } = started;
      const produced = await produceAll(producer, cell.cell, Array.from({ length: cell.n }, (_, i) => faultCommand(cell.cell, i)), { deadlineMs: 30_000 });
      expect(produced.every((record) => record.entryId !== null)).toBe(true);
      const optional = OPTIONAL[permission] ?? (RARE.has(permission) ? /./ : undefined);
      if (optional) {
        // It goes on without: every command delivered, and the line that says what it does instead.
        await waitFor(`${permission} taken away: the commands sent`, () => sentOf(cell), (count) => count === cell.n, { timeoutMs: 60_000 });
        expect(said(logs.lines), permission).toMatch(optional);
        seen.push(`${permission}: works without it${RARE.has(permission) ? ' (a rarer path needs it)' : ` (${optional.source})`}`);
      } else {
        const answer = await waitFor(
          `${permission} taken away: /readyz 503 naming it and where the ACL is`,
          () => readyzOf(engine),
          (got) => got.status === 503 && got.body.includes(command) && got.body.includes('A Redis user for the engines'),
          { timeoutMs: 60_000, intervalMs: 250 },
        );
        seen.push(`${permission}: /readyz 503 (${answer.body.slice(0, 200)})`);
      }
      await engine.stop();
      engines.splice(engines.indexOf(engine), 1);
    }
    console.log(`[redis-acl] each permission of the engine line taken away:\n  ${seen.join('\n  ')}`);
  }, 900_000);

  it('a certificate the engine does not trust: it refuses to start, saying so and where the CA goes', async () => {
    const cell = await openCell({ cell: 'redis-untrusted', n: 1, dsn: db.dsn, pool: db.pool, redis: { addr: redis.addr, client: redis.admin }, sink });
    const error = await startEngineAs(cell, 'postern-engine', { MAIL_REDIS_TLS_CA: redis.otherCa.caFile }).then(
      () => null,
      (caught: unknown) => caught,
    );
    const explained = explainStartupFailure(error);
    expect(explained?.what, String(error)).toBe("the server's TLS certificate is not trusted");
    expect(explained?.todo).toMatch(/MAIL_REDIS_TLS_CA/);
  }, 120_000);
});
