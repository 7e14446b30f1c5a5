import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { connectionSettings } from './tls-files.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function setUp() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'postern-tls-files-'));
  dirs.push(dir);
  const ca = path.join(dir, 'db-ca.pem');
  writeFileSync(ca, 'first CA');
  const lines: Array<{ level: number; msg: string }> = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line)) });
  // No server at port 1: each connection attempt reads the settings, then fails to connect.
  const settings = connectionSettings(`postgres://u:p@127.0.0.1:1/db?sslmode=verify-full&sslrootcert=${encodeURIComponent(ca)}`, logger);
  return { dir, ca, lines, settings };
}

const caOf = (settings: pg.ClientConfig) => (settings.ssl as { ca?: string }).ca;

describe("the DSN's TLS files", () => {
  it('are read again for each connection: a CA renamed over the file is used from the next one', () => {
    const { dir, ca, settings } = setUp();
    expect(caOf(settings)).toBe('first CA');
    writeFileSync(path.join(dir, 'new.pem'), 'first CA\nsecond CA');
    renameSync(path.join(dir, 'new.pem'), ca);
    expect(caOf(settings)).toBe('first CA\nsecond CA');
    expect(settings.host).toBe('127.0.0.1');
    expect((settings.ssl as { rejectUnauthorized?: boolean }).rejectUnauthorized).not.toBe(false);
  });

  it('missing for a while: the content read last, one warning, and a line when it is back; nothing thrown', () => {
    const { ca, lines, settings } = setUp();
    expect(caOf(settings)).toBe('first CA');
    rmSync(ca);
    expect(caOf(settings)).toBe('first CA');
    expect(caOf(settings)).toBe('first CA');
    expect(lines.filter((line) => line.level === 40).map((line) => line.msg)).toEqual([
      "the DSN's sslrootcert file cannot be read; new PostgreSQL connections use its content as last read. Replace it by renaming a new file over it, never by removing it first",
    ]);
    writeFileSync(ca, 'renewed CA');
    expect(caOf(settings)).toBe('renewed CA');
    expect(lines.at(-1)?.msg).toMatch(/can be read again/);
  });

  it('a pool whose CA file is gone fails its connections as connections, never by a throw outside them', async () => {
    const { ca, settings } = setUp();
    rmSync(ca);
    const pool = new pg.Pool({ ...settings, max: 1, connectionTimeoutMillis: 2_000 });
    try {
      // Before: pg parsed the connection string again for each connection and threw ENOENT; for
      // the second query, waiting in pg-pool's queue, outside any request: uncaught.
      const queries = [pool.query('SELECT 1'), pool.query('SELECT 1')];
      for (const query of queries) await expect(query).rejects.toThrow(/ECONNREFUSED/);
    } finally {
      await pool.end();
    }
  });

  it('a DSN without TLS files is as pg parses it', () => {
    const logger = pino({ level: 'silent' });
    expect(connectionSettings('postgres://u@db.example:5433/mail?sslmode=disable', logger)).toMatchObject({ host: 'db.example', port: '5433', ssl: false });
    expect(connectionSettings('postgres://u@db.example/mail', logger).ssl).toBeUndefined();
  });
});
