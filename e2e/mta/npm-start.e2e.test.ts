// `npm start` of the edge's workspace runs it on the documented default, 127.0.0.1:2525, and stops
// cleanly on SIGTERM. (The repository-wide `npm start` orchestrates every app; it lives elsewhere.)
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase, waitFor } from '../harness/index.ts';
import { SmtpTestClient } from './helpers/smtp-client.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase('mta-npm-start');
});

afterAll(async () => {
  await db?.drop();
});

describe('npm start -w @postern/mta', () => {
  it('listens on 127.0.0.1:2525 by default and stops on SIGTERM', async () => {
    // Another server already on 2525 (a developer's npm start) would answer for the edge under test
    // and make this test pass for the wrong reason: refuse to run instead.
    const occupied = await SmtpTestClient.connect(2525, '127.0.0.1').then(
      async ({ client }) => {
        await client.quit();
        return true;
      },
      () => false,
    );
    expect(occupied, 'something already listens on 127.0.0.1:2525 (a running npm start?): stop it and run again').toBe(false);
    const child = spawn('npm', ['start', '--silent', '-w', '@postern/mta'], {
      cwd: repoRoot,
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        MAIL_POSTGRES_PRIMARY_DSN: db.dsn,
        // Only the SMTP default is under test; the ops port is left to the OS to avoid clashes.
        MAIL_MTA_HTTP_ADDR: '127.0.0.1:0',
        MAIL_LOG_LEVEL: 'warn',
      },
      stdio: 'ignore',
      detached: false,
    });
    const exit = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
      child.once('exit', (code, signal) => resolve({ code, signal })),
    );
    try {
      const greeting = await waitFor(
        'the edge to greet on 127.0.0.1:2525',
        async () => {
          const { client, greeting: reply } = await SmtpTestClient.connect(2525, '127.0.0.1');
          await client.quit();
          return reply;
        },
        (reply) => reply.code === 220,
        { timeoutMs: 30_000, intervalMs: 200 },
      );
      // smtp-server writes "<name> ESMTP" and then the banner: "ESMTP" once.
      expect(greeting.text).toMatch(/ ESMTP Postern$/);
    } finally {
      child.kill('SIGTERM');
    }
    // npm forwards the signal to the edge and reports it as its own way of ending; the edge itself
    // stops within its shutdown timeout and leaves no orphan holding the port.
    const ended = await exit;
    expect(ended.code === 0 || ended.signal === 'SIGTERM').toBe(true);
    await waitFor(
      'port 2525 to be released',
      () =>
        SmtpTestClient.connect(2525, '127.0.0.1').then(
          ({ client }) => {
            client.close();
            return 'open';
          },
          () => 'closed',
        ),
      (state) => state === 'closed',
      { timeoutMs: 15_000, intervalMs: 100 },
    );
  });
});
