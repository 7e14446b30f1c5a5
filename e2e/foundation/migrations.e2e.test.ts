// The schema arrives by migration only: on an empty database it applies, a second run changes
// nothing, and migrators started together (N processes booting at once) migrate exactly once.
// `postern migrate` warns about the server's settings as every process does at start. A previous
// release (its migrations folder without the latest files) starts on the schema a later one made,
// the rollback of docs/deploy.md, and names the migrations it does not have.

import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createLogger, MIGRATIONS_DIR, runMigrations } from '@postern/shared';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminDsn, databaseDsn } from '../harness/index.ts';

const logger = createLogger('e2e-migrations', 'silent');

async function createEmptyDatabase(name: string): Promise<string> {
  const admin = new pg.Client({ connectionString: adminDsn() });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
  await admin.end();
  return databaseDsn(name);
}

async function dropDatabase(name: string): Promise<void> {
  const admin = new pg.Client({ connectionString: adminDsn() });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
  await admin.end();
}

async function schemaFingerprint(dsn: string): Promise<string[]> {
  const client = new pg.Client({ connectionString: dsn });
  await client.connect();
  try {
    const { rows } = await client.query<{ item: string }>(
      `SELECT table_name || '.' || column_name || ':' || data_type AS item
         FROM information_schema.columns WHERE table_schema = 'mail'
       UNION ALL
       SELECT 'index ' || indexname FROM pg_indexes WHERE schemaname = 'mail'
       UNION ALL
       SELECT 'constraint ' || conname FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
        WHERE n.nspname = 'mail'
       ORDER BY 1`,
    );
    return rows.map((row) => row.item);
  } finally {
    await client.end();
  }
}

describe('migrations', () => {
  const databases: string[] = [];
  const fresh = async (label: string) => {
    const name = `m_${label}_${Math.random().toString(36).slice(2, 8)}`;
    databases.push(name);
    return createEmptyDatabase(name);
  };

  beforeAll(() => {
    databases.length = 0;
  });
  afterAll(async () => {
    await Promise.all(databases.map(dropDatabase));
  });

  it('apply on an empty database, and a second run changes nothing', async () => {
    const dsn = await fresh('twice');
    const first = await runMigrations({ dsn, logger });
    expect(first.applied.length).toBeGreaterThan(0);
    const before = await schemaFingerprint(dsn);
    expect(before).toContain('deliveries.status:text');
    expect(before).toContain('index deliveries_due_idx');

    const second = await runMigrations({ dsn, logger });
    expect(second.applied).toEqual([]);
    expect(await schemaFingerprint(dsn)).toEqual(before);
  });

  it('migrators started together do not collide: one applies, the others wait and find nothing to do', async () => {
    const dsn = await fresh('together');
    const results = await Promise.all(Array.from({ length: 4 }, () => runMigrations({ dsn, logger })));
    const appliedCounts = results.map((result) => result.applied.length).sort();
    expect(appliedCounts.filter((count) => count > 0)).toHaveLength(1);
    expect(appliedCounts.filter((count) => count === 0)).toHaveLength(3);

    const client = new pg.Client({ connectionString: dsn });
    await client.connect();
    const { rows } = await client.query('SELECT name FROM mail.postern_migrations');
    await client.end();
    // Each migration recorded once, not once per migrator.
    expect(new Set(rows.map((row) => row.name)).size).toBe(rows.length);
  });

  it('a previous release starts on a later release\'s schema: nothing to apply, the later migrations named as newer', async () => {
    const dsn = await fresh('rollback');
    const all = readdirSync(MIGRATIONS_DIR)
      .filter((file) => file.endsWith('.sql'))
      .sort();
    const previous = mkdtempSync(path.join(os.tmpdir(), 'postern-previous-release-'));
    try {
      for (const file of all.slice(0, -2)) copyFileSync(path.join(MIGRATIONS_DIR, file), path.join(previous, file));
      const later = await runMigrations({ dsn, logger });
      expect(later.newer).toEqual([]);
      const lines: { msg: string; newer?: string[] }[] = [];
      const recording = createLogger('e2e-migrations-rollback', 'warn', { destination: { write: (line: string) => lines.push(JSON.parse(line)) } });
      const rolledBack = await runMigrations({ dsn, logger: recording, dir: previous });
      expect(rolledBack).toEqual({ applied: [], newer: all.slice(-2).map((file) => file.replace(/\.sql$/, '')) });
      expect(lines.find((line) => line.newer)?.msg).toMatch(/this is a rollback.*docs\/deploy\.md/);
    } finally {
      rmSync(previous, { recursive: true, force: true });
    }
  });

  it('postern migrate applies them and warns about the settings of the server, as the processes do', async () => {
    const dsn = await fresh('command');
    // The e2e server runs with fsync and synchronous_commit off (e2e/harness/containers.ts).
    const root = path.resolve(import.meta.dirname, '..', '..');
    const run = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      const env = { PATH: process.env.PATH ?? '', MAIL_POSTGRES_PRIMARY_DSN: dsn };
      execFile(process.execPath, [path.join(root, 'bin', 'postern.ts'), 'migrate'], { cwd: root, env, timeout: 60_000 }, (error, stdout, stderr) => {
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout, stderr });
      });
    });
    expect(run, run.stderr).toMatchObject({ code: 0 });
    expect(run.stdout).toMatch(/^applied: /m);
    expect(run.stdout).toContain('PostgreSQL: fsync is off');
    expect(run.stdout).toContain('PostgreSQL: synchronous_commit is off');
  });
});
