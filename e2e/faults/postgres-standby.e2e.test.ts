// The DSN's endpoint names a standby instead of the primary (a failover's DNS, a proxy without a
// health check, an old primary rejoined as a replica). A standby answers reads from its copy, as
// old as its replay: the edge would refuse with a permanent 550 a recipient created since, and
// accept mail for one deleted since (stale-alias-table by another road). Here the standby's replay
// is paused, an alias is created on the primary, and the edge's and engine's address is moved to
// the standby (a TCP proxy retargeted, its connections cut, as a failover does): every RCPT must
// be 451 4.3.0 — never the standby's 550 — and /readyz must say why, until the address names the
// primary again.
import { createAlias, createDomain, createLogger, runMigrations } from '@postern/shared';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import type { Edge } from '../../apps/mta/src/edge.ts';
import { startTestEngine } from '../core/helpers/engine.ts';
import { type PostgresStandbyPair, readyzOf, readyzWhen, startPostgresStandbyPair, startTcpProxy, type TcpProxy, waitFor } from '../harness/index.ts';
import { rcptReply, startTestEdge } from '../mta/helpers/edge.ts';

let pair: PostgresStandbyPair;
let proxy: TcpProxy;
let primaryPool: pg.Pool;
let edge: Edge;
let engine: Engine;

beforeAll(async () => {
  pair = await startPostgresStandbyPair(async (dsn) => {
    await runMigrations({ dsn: dsn('postern_admin'), logger: createLogger('e2e-standby', 'warn') });
    const pool = new pg.Pool({ connectionString: dsn('postern_admin'), max: 1 });
    await createDomain(pool, 'postern.test');
    await createAlias(pool, { domain: 'postern.test', localPart: 'ops', kind: 'forward', targets: ['ops@inbox.test'] });
    await pool.end();
  });
  primaryPool = new pg.Pool({ connectionString: pair.dsn('postern_admin', 'primary'), max: 2 });
  proxy = await startTcpProxy(pair.primaryAddress.host, pair.primaryAddress.port);
  const dsn = `postgres://postern:postern@${proxy.host}:${proxy.port}/postern_admin`;
  const env = { MAIL_MTA_LOOKUP_TIMEOUT: '1s', MAIL_POSTGRES_CONNECT_TIMEOUT: '1s' };
  [edge, engine] = await Promise.all([startTestEdge(dsn, env), startTestEngine(dsn, { MAIL_SMTP_MODE: 'stub', ...env })]);
}, 240_000);

afterAll(async () => {
  await Promise.allSettled([edge?.stop(), engine?.stop()]);
  await primaryPool?.end();
  await proxy?.close();
  await pair?.close();
}, 120_000);

const rcpt = (address: string) => rcptReply(edge, address);

describe('an endpoint that names a standby', () => {
  it('gets no answer from it: every RCPT is 451 and /readyz says standby, until the primary is back', async () => {
    expect((await rcpt('ops@postern.test')).code).toBe(250);
    expect((await readyzOf(edge)).status).toBe(200);

    // The standby stops replaying, and the primary moves on: a recipient created there now.
    const standby = new pg.Client({ connectionString: pair.dsn('postern_admin', 'standby') });
    await standby.connect();
    try {
      await standby.query('SELECT pg_wal_replay_pause()');
      await createAlias(primaryPool, { domain: 'postern.test', localPart: 'new', kind: 'forward', targets: ['new@inbox.test'] });
      const { rows } = await standby.query<{ n: number }>("SELECT count(*)::int AS n FROM mail.aliases WHERE local_part = 'new'");
      expect(rows[0]?.n).toBe(0);
    } finally {
      await standby.end();
    }

    // The address now leads to the standby, and the connections open to the primary are cut.
    proxy.retarget(pair.standbyAddress.host, pair.standbyAddress.port);
    proxy.cutConnections();
    // Nothing is known from where the address leads: never the standby's 550 for the new recipient,
    // nor its 250 for the old one.
    for (const address of ['new@postern.test', 'ops@postern.test', 'nobody@postern.test']) {
      const reply = await waitFor(`RCPT ${address} answered 451`, () => rcpt(address), (answer) => answer.code !== 250, { timeoutMs: 30_000, intervalMs: 200 });
      expect(reply.raw, address).toBe('451 4.3.0 Temporary recipient lookup failure, try again later');
    }
    for (const process of [edge, engine]) {
      const answer = await readyzWhen(process, 503);
      expect(answer.body).toMatch(/is a standby \(pg_is_in_recovery\(\) is true\), not the primary/);
    }

    // The address names the primary again: the new recipient is known, without a restart.
    proxy.retarget(pair.primaryAddress.host, pair.primaryAddress.port);
    proxy.cutConnections();
    const back = await waitFor('RCPT new@ answered 250', () => rcpt('new@postern.test'), (answer) => answer.code === 250, { timeoutMs: 30_000, intervalMs: 200 });
    expect(back.raw).toBe('250 2.1.5 Accepted');
    for (const process of [edge, engine]) {
      await readyzWhen(process, 200);
    }
  }, 180_000);
});
