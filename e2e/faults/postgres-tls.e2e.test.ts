// PostgreSQL over TLS, as managed services run it: `ssl = on`, a server certificate of a private CA,
// and a pg_hba.conf of `hostssl` lines only (e2e/harness/tls-postgres.ts). Two questions.
//
// Which DSNs work: every process (`postern migrate`, `mta`, `core`, `api`) started as an operator
// starts it, once per DSN of docs/deploy.md's table ("TLS to PostgreSQL and Redis"). Each either
// starts, or exits 1 by itself with one fatal line that says what failed and what to put in the
// DSN — never a hang, never a stack trace, never "check the user and password" for a server that
// wants TLS. node-postgres has its own sslmode semantics (pg-connection-string 2): `require`,
// `prefer` and `verify-ca` verify the certificate and the host name as `verify-full` does, so
// `require` without `sslrootcert` fails on a private CA; `no-verify` (or libpq's
// `uselibpqcompat=true&sslmode=require`) encrypts without verifying.
//
// A certificate refused while the processes run (the server renewed by a CA the DSN does not name,
// as a managed provider's CA rotation does): the database is away for them until the certificate
// or the DSN is fixed — /readyz 503 with the reason, the edge's 4xx, the stream's entries pending —
// and nothing is lost. Before, the stream took the refusal for its commands' fault: after five
// deliveries each was quarantined as handling_failed, the quarantine failed the same way, and the
// command was acknowledged and gone.
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import type { Edge } from '../../apps/mta/src/edge.ts';
import { startTestEngine } from '../core/helpers/engine.ts';
import { type FaultSink, startFaultSink } from '../harness/fault-sink.ts';
import { captureLogs, readyzWhen, startTlsPostgres, type TlsPostgres, waitFor } from '../harness/index.ts';
import { startTestEdge } from '../mta/helpers/edge.ts';
import { cellEngineEnv, cellSize, EDGE_ENV, expectEverythingDelivered, openCell, startTraffic, stopCellProcesses } from './helpers/cell.ts';
import { engineNote } from './helpers/engine-facts.ts';
import { type FaultRedis, startFaultRedis } from './helpers/fault-redis.ts';
import { type PosternCommand, runPostern } from './helpers/postern-command.ts';

let tls: TlsPostgres;
let redis: FaultRedis;

beforeAll(async () => {
  // Both, or neither: a server started while the other failed is stopped, not left behind.
  const [startedTls, startedRedis] = await Promise.allSettled([startTlsPostgres(), startFaultRedis()]);
  if (startedTls.status === 'rejected' || startedRedis.status === 'rejected') {
    await Promise.allSettled([startedTls.status === 'fulfilled' && startedTls.value.close(), startedRedis.status === 'fulfilled' && startedRedis.value.close()]);
    throw startedTls.status === 'rejected' ? startedTls.reason : (startedRedis as PromiseRejectedResult).reason;
  }
  [tls, redis] = [startedTls.value, startedRedis.value];
}, 400_000);

afterAll(async () => {
  await redis?.close();
  await tls?.close();
});

const caOf = (file: string) => encodeURIComponent(file);

interface DsnCase {
  query: () => string;
  env?: () => Record<string, string>;
  /** null: it starts; else its fatal line. */
  fatal: RegExp | null;
}

/** docs/deploy.md's table, row by row. */
const DSNS: Record<string, DsnCase> = {
  'sslmode=verify-full&sslrootcert=<CA>': { query: () => `sslmode=verify-full&sslrootcert=${caOf(tls.ca.caFile)}`, fatal: null },
  'sslmode=require&sslrootcert=<CA> (verified as verify-full)': { query: () => `sslmode=require&sslrootcert=${caOf(tls.ca.caFile)}`, fatal: null },
  'sslmode=verify-full, the CA in NODE_EXTRA_CA_CERTS': { query: () => 'sslmode=verify-full', env: () => ({ NODE_EXTRA_CA_CERTS: tls.ca.caFile }), fatal: null },
  'sslmode=no-verify (encrypted, not verified)': { query: () => 'sslmode=no-verify', fatal: null },
  'uselibpqcompat=true&sslmode=require (libpq: encrypted, not verified)': { query: () => 'uselibpqcompat=true&sslmode=require', fatal: null },
  'sslmode=require without the CA': {
    query: () => 'sslmode=require',
    fatal: /the server's TLS certificate is not trusted: UNABLE_TO_VERIFY_LEAF_SIGNATURE: unable to verify the first certificate.*sslrootcert=<CA file>/,
  },
  'sslrootcert=<another CA>': {
    query: () => `sslmode=verify-full&sslrootcert=${caOf(tls.otherCa.caFile)}`,
    fatal: /the server's TLS certificate is not trusted: UNABLE_TO_VERIFY_LEAF_SIGNATURE: /,
  },
  'sslmode=disable': { query: () => 'sslmode=disable', fatal: /PostgreSQL accepts only TLS connections from this host: .*no encryption\. add sslmode=verify-full/ },
  'no sslmode': { query: () => '', fatal: /PostgreSQL accepts only TLS connections from this host/ },
};

describe('PostgreSQL taking only TLS: which DSNs start a process', () => {
  for (const [name, dsnCase] of Object.entries(DSNS)) {
    it(`postern migrate, ${name}`, async () => {
      const run = await runPostern('migrate', { MAIL_POSTGRES_PRIMARY_DSN: tls.dsn(dsnCase.query()), ...dsnCase.env?.() });
      expect(run.ended, run.lines.join('\n')).toBe('exited');
      if (dsnCase.fatal === null) {
        expect(run.code, run.lines.join('\n')).toBe(0);
        expect(run.lines.join('\n')).toMatch(/nothing to apply|applied:/);
      } else {
        expect(run.code, run.lines.join('\n')).toBe(1);
        expect(run.fatal ?? run.lines.join('\n')).toMatch(dsnCase.fatal);
        // One line that says it, not a stack.
        expect(run.lines.join('\n')).not.toMatch(/\n\s+at /);
      }
    }, 120_000);
  }

  for (const command of ['mta', 'core', 'api'] satisfies PosternCommand[]) {
    it(`postern ${command} starts with verify-full and its CA, and refuses to start without TLS, saying so`, async () => {
      const good = await runPostern(command, { MAIL_POSTGRES_PRIMARY_DSN: tls.dsn(DSNS['sslmode=verify-full&sslrootcert=<CA>']?.query() ?? '') });
      expect(good.ended, good.lines.join('\n')).toBe('started');
      const bad = await runPostern(command, { MAIL_POSTGRES_PRIMARY_DSN: tls.dsn('sslmode=disable') });
      expect(bad.ended, bad.lines.join('\n')).toBe('exited');
      expect(bad.code).toBe(1);
      expect(bad.fatal).toMatch(new RegExp(`^${command} failed to start: PostgreSQL accepts only TLS connections from this host`));
    }, 180_000);
  }

  it('a certificate for another host name: refused at start, by name', async () => {
    await tls.present('wrong-host');
    try {
      const run = await runPostern('migrate', { MAIL_POSTGRES_PRIMARY_DSN: tls.dsn(`sslmode=verify-full&sslrootcert=${caOf(tls.ca.caFile)}`) });
      expect(run.code, run.lines.join('\n')).toBe(1);
      expect(run.fatal).toMatch(/the server's TLS certificate is not for the host connected to: Hostname\/IP does not match/);
    } finally {
      await tls.present('trusted');
    }
  }, 120_000);

  it('an sslrootcert that is not there: a configuration error naming the file (exit 2), not "not a URL"', async () => {
    const run = await runPostern('core', { MAIL_POSTGRES_PRIMARY_DSN: tls.dsn('sslmode=verify-full&sslrootcert=/nonexistent/ca.pem') });
    expect(run.code, run.lines.join('\n')).toBe(2);
    expect(run.lines.join('\n')).toMatch(/MAIL_POSTGRES_PRIMARY_DSN: names a file that cannot be read: \/nonexistent\/ca\.pem \(ENOENT\)/);
  }, 60_000);
});

describe('fault matrix: PostgreSQL renewed by a CA the processes do not trust, the CA added to their bundle 30 s later', () => {
  const UNTRUSTED_MS = 30_000;
  let sink: FaultSink | null = null;
  let edge: Edge | null = null;
  let engine: Engine | null = null;
  // The processes' CA bundle: the operator's fix is to add the new CA to it. It is read again for
  // every new connection, so no process is restarted. Meanwhile it is removed, as a careless
  // redeploy would (before, a pool that could not read it threw from inside pg-pool, uncaught, and
  // the process was gone), and written again with both CAs.
  const bundleDir = mkdtempSync(path.join(os.tmpdir(), 'postern-bundle-'));
  const bundle = path.join(bundleDir, 'db-ca.pem');

  afterAll(async () => {
    await stopCellProcesses({ engines: [engine], edge, sink });
    rmSync(bundleDir, { recursive: true, force: true });
  });

  it('during intake: the database is away for them (503 with the reason, 4xx, entries pending), and everything is delivered once after', async () => {
    copyFileSync(tls.ca.caFile, bundle);
    const dsn = tls.dsn(`sslmode=verify-full&sslrootcert=${caOf(bundle)}`);
    // A TLS handshake and SCRAM on a loaded machine take longer than the cells' 2 s.
    const slowConnect = { MAIL_POSTGRES_CONNECT_TIMEOUT: '15s' };
    const logs = captureLogs('core-tls');
    const pool = new pg.Pool({ connectionString: tls.adminDsn, max: 3 });
    pool.on('error', () => {});
    try {
      sink = await startFaultSink();
      const cell = await openCell({ cell: 'pg-untrusted-certificate', n: cellSize(100), dsn, pool, redis, sink });
      edge = await startTestEdge(dsn, { ...EDGE_ENV, ...slowConnect });
      engine = await startTestEngine(dsn, cellEngineEnv(cell, slowConnect), { logger: logs.logger });
      const port = edge.smtp.port;
      const traffic = startTraffic(cell, { sender: { port: () => port, concurrency: 2, paceMs: 250 }, paceMs: 150 });
      await waitFor('a fifth of the intake handed over', traffic.progress, (count) => count >= (2 * cell.n) / 5, { timeoutMs: 60_000 });
      await tls.present('untrusted-ca');
      const faultStartedAt = Date.now();
      // Not ready, and the engine says why. (Its /readyz check gives up after 2 s: on a loaded
      // machine a refused TLS handshake took longer, and the reason read "no answer within 2000 ms".)
      for (const process of [edge, engine]) await readyzWhen(process, 503, 60_000);
      await waitFor('the engine to log the certificate refused', () => logs.lines.map((line) => JSON.stringify(line.err ?? '')).join('\n'), (text) => /unable to verify the first certificate/.test(text), {
        timeoutMs: 60_000,
        intervalMs: 500,
      });
      // The fault lasts its stated time on purpose (the outage is the experiment): long enough for
      // many more than five deliveries of the stream's head (MAX_HANDLING_FAILURES), which used to
      // quarantine it.
      rmSync(bundle);
      await waitFor('the engine to say its CA file cannot be read', () => logs.lines.map((line) => String(line.msg)).join('\n'), (text) => /sslrootcert file cannot be read/.test(text), {
        timeoutMs: 60_000,
        intervalMs: 500,
      });
      await delay(Math.max(0, faultStartedAt + UNTRUSTED_MS - Date.now()));
      writeFileSync(bundle, `${tls.ca.ca}${tls.otherCa.ca}`);
      const faultEndedAt = Date.now();
      const inputs = await traffic.done;
      await expectEverythingDelivered(cell, inputs, {
        faultEndedAt,
        settleMs: 90_000,
        duplicateBound: 'zero',
        annotate: engineNote([engine]),
        note: 'server certificate of another CA after a fifth was in (open connections cut); the sslrootcert bundle removed, then written with its CA 30 s later',
      });
      for (const process of [edge, engine]) await readyzWhen(process, 200);
      const { rows } = await pool.query<{ failure_code: string }>('SELECT failure_code FROM mail.malformed_commands');
      expect(rows).toEqual([]);
      // The fault really met the intake: some sender had to try again.
      expect(inputs.sent.some((record) => record.tries > 1)).toBe(true);
    } finally {
      await pool.end();
    }
  }, 300_000);
});
