// Each test file gets its own database, cloned from the migrated template (CREATE DATABASE ...
// TEMPLATE is a file copy: milliseconds, and no test sees another's rows). A failing run can keep
// its databases for inspection with POSTERN_E2E_KEEP_DATABASES=1.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { TEMPLATE_DATABASE } from './context.ts';

export interface TestDatabase {
  name: string;
  dsn: string;
  /** A small pool for the test's own queries and assertions. */
  pool: pg.Pool;
  drop(): Promise<void>;
}

export function adminDsn(): string {
  const { host, port, user, password, adminDatabase } = inject('postern').postgres;
  return `postgres://${user}:${password}@${host}:${port}/${adminDatabase}`;
}

export function databaseDsn(database: string): string {
  const { host, port, user, password } = inject('postern').postgres;
  return `postgres://${user}:${password}@${host}:${port}/${database}`;
}

export async function createTestDatabase(label: string): Promise<TestDatabase> {
  const slug = label.toLowerCase().replace(/[^a-z0-9]+/g, '_').slice(0, 40);
  const name = `t_${slug}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminDsn() });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)} TEMPLATE ${pg.escapeIdentifier(TEMPLATE_DATABASE)}`);
  } finally {
    await admin.end();
  }
  const dsn = databaseDsn(name);
  const pool = new pg.Pool({ connectionString: dsn, max: 4 });
  pool.on('error', () => {});
  return {
    name,
    dsn,
    pool,
    async drop() {
      await pool.end();
      if (process.env.POSTERN_E2E_KEEP_DATABASES === '1') return;
      const client = new pg.Client({ connectionString: adminDsn() });
      await client.connect();
      try {
        await client.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
      } finally {
        await client.end();
      }
    },
  };
}
