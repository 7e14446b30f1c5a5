// The real process: `node apps/mta/src/main.ts` boots (config, migrations, listeners), holds its
// memory flat while a 200 MB message is drained past the size cap, and on SIGTERM tells an idle
// session 421 and exits 0.
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createAlias, createDomain } from '@postern/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase, waitFor } from '../harness/index.ts';
import { SmtpTestClient, sendMail, simpleMessage } from './helpers/smtp-client.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
let db: TestDatabase;
let child: ChildProcess;
let smtpPort = 0;
let httpPort = 0;
const logLines: string[] = [];
const exited = { code: null as number | null, signal: null as string | null, done: false };

function rssKiB(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(match?.[1] ?? 0);
}

beforeAll(async () => {
  db = await createTestDatabase('mta-main');
  await createDomain(db.pool, 'postern.test');
  await createAlias(db.pool, { domain: 'postern.test', localPart: 'big', kind: 'forward', targets: ['big@inbox.test'] });
  child = spawn(process.execPath, ['apps/mta/src/main.ts'], {
    cwd: repoRoot,
    env: {
      PATH: process.env.PATH,
      MAIL_POSTGRES_PRIMARY_DSN: db.dsn,
      MAIL_SMTP_LISTEN_ADDR: '127.0.0.1:0',
      MAIL_MTA_HTTP_ADDR: '127.0.0.1:0',
      MAIL_MTA_HOSTNAME: 'mx.postern.test',
      MAIL_MTA_MAX_MESSAGE_SIZE: '1MiB',
      MAIL_SHUTDOWN_TIMEOUT: '5s',
      MAIL_LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.on('exit', (code, signal) => Object.assign(exited, { code, signal, done: true }));
  for (const stream of [child.stdout, child.stderr]) {
    if (stream) createInterface({ input: stream }).on('line', (line) => logLines.push(line));
  }
  const portOf = (message: string) => {
    for (const line of logLines) {
      if (!line.includes(message)) continue;
      const address = (JSON.parse(line) as { address?: string }).address ?? '';
      return Number(address.split(':').pop());
    }
    return 0;
  };
  await waitFor('the edge process to open its listeners', () => {
    if (exited.done) throw new Error(`exited early: ${logLines.join('\n')}`);
    smtpPort = portOf('SMTP listener open');
    httpPort = portOf('HTTP listener open');
    return smtpPort > 0 && httpPort > 0;
  }, Boolean, { timeoutMs: 30_000 });
});

afterAll(async () => {
  if (!exited.done) child.kill('SIGKILL');
  await db?.drop();
});

describe('node apps/mta/src/main.ts', () => {
  it('is ready and accepts a message', async () => {
    const ready = await fetch(`http://127.0.0.1:${httpPort}/readyz`);
    expect(ready.status).toBe(200);
    const { client } = await SmtpTestClient.connect(smtpPort);
    await client.command('EHLO client.outside.test');
    const result = await sendMail(client, { from: 'a@outside.test', to: ['big@postern.test'], message: simpleMessage('warm-up') });
    expect(result.final?.code).toBe(250);
    await client.quit();
  });

  // Nothing of the message is kept past the cap; what RSS still shows is garbage awaiting V8's
  // next collection: Node allocates a fresh buffer per socket read (and smtp-server one more per
  // chunk), and V8 collects after about 64 MiB of such external memory. That ceiling does not
  // depend on the message size (a 600 MB attempt peaks the same); buffering would grow by 200 MB.
  it('drains a 200 MB message past a 1 MiB cap with 552 5.3.4, its memory bounded whatever the size', async () => {
    const pid = child.pid as number;
    const { client } = await SmtpTestClient.connect(smtpPort);
    await client.command('EHLO client.outside.test');
    expect((await client.command('MAIL FROM:<a@outside.test>')).code).toBe(250);
    expect((await client.command('RCPT TO:<big@postern.test>')).code).toBe(250);
    expect((await client.command('DATA')).code).toBe(354);
    const baseline = rssKiB(pid);
    let peak = baseline;
    const sampler = setInterval(() => {
      peak = Math.max(peak, rssKiB(pid));
    }, 20);
    const chunk = Buffer.from(`${'x'.repeat(1022)}\r\n`.repeat(1024)); // 1 MiB of proper lines
    for (let sent = 0; sent < 200; sent++) await client.write(chunk);
    await client.write('.\r\n');
    const reply = await client.readReply(120_000);
    clearInterval(sampler);
    peak = Math.max(peak, rssKiB(pid));
    expect(reply.raw).toBe('552 5.3.4 Message exceeds the maximum size of 1048576 bytes');
    const growthMiB = (peak - baseline) / 1024;
    console.log(`[mta] 200 MB oversize DATA: edge RSS ${Math.round(baseline / 1024)} MiB -> peak ${Math.round(peak / 1024)} MiB (+${growthMiB.toFixed(1)} MiB)`);
    expect(growthMiB).toBeLessThan(100);
    await client.quit();
    const { rows } = await db.pool.query('SELECT count(*)::int AS n FROM mail.messages');
    expect(rows[0].n).toBe(1);
  });

  it('on SIGTERM tells an idle session 421 4.3.2 and exits 0', async () => {
    const { client } = await SmtpTestClient.connect(smtpPort);
    await client.command('EHLO client.outside.test');
    child.kill('SIGTERM');
    const reply = await client.readReply(10_000);
    expect(reply.raw).toBe('421 4.3.2 Service shutting down, try again later');
    await client.closed;
    await waitFor('the edge process to exit', () => exited.done, Boolean, { timeoutMs: 15_000 });
    expect(exited).toMatchObject({ code: 0, signal: null });
    expect(logLines.some((line) => line.includes('"mta stopped"'))).toBe(true);
  });
});
