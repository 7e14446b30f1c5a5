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
import { InspectorSession } from './helpers/inspector.ts';
import { SmtpTestClient, sendMail, simpleMessage } from './helpers/smtp-client.ts';

const OVERSIZE_MIB = Number(process.env.POSTERN_OVERSIZE_MIB ?? 200);
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
let db: TestDatabase;
let child: ChildProcess;
let inspector: InspectorSession;
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
  // Started as the container image and `postern mta` start it: plain node, no --expose-gc (the
  // edge gets V8's gc() itself: drained-memory.ts). --inspect: the memory test forces a full
  // collection in the edge through the DevTools protocol.
  child = spawn(process.execPath, ['--inspect=127.0.0.1:0', 'apps/mta/src/main.ts'], {
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
  // 'close', not 'exit': exited, and every line it wrote read (the last test reads "mta stopped").
  child.on('close', (code, signal) => Object.assign(exited, { code, signal, done: true }));
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
  const inspectorUrl = logLines.map((line) => /Debugger listening on (ws:\/\/\S+)/.exec(line)?.[1]).find(Boolean);
  if (!inspectorUrl) throw new Error(`no inspector address in: ${logLines.join('\n')}`);
  inspector = await InspectorSession.connect(inspectorUrl);
});

afterAll(async () => {
  inspector?.close();
  if (!exited.done) child.kill('SIGKILL');
  await db?.drop();
});

describe('node apps/mta/src/main.ts', () => {
  it('is ready and accepts a message', async () => {
    const ready = await fetch(`http://127.0.0.1:${httpPort}/readyz`);
    expect(ready.status).toBe(200);
    // Started without --expose-gc, it has V8's gc() all the same and does not warn that it lacks it.
    expect(logLines.filter((line) => line.includes('"collector":"unavailable"'))).toEqual([]);
    const { client } = await SmtpTestClient.connect(smtpPort);
    await client.command('EHLO client.outside.test');
    const result = await sendMail(client, { from: 'a@outside.test', to: ['big@postern.test'], message: simpleMessage('warm-up') });
    expect(result.final?.code).toBe(250);
    await client.quit();
  });

  // Nothing of the message is kept past the cap, and the garbage of the socket's read buffers is
  // freed while draining (apps/mta/src/data/drained-memory.ts): without that, V8 collects only
  // after some 64 MiB of such external memory, and RSS peaks 70-90 MiB up, where a few MB are
  // allowed; measured with it: +6-8 MiB. What is retained is measured after a full collection
  // forced through the inspector: V8's heap and external memory are back where they started
  // (docs/mta.md).
  it('drains a 200 MiB message past a 1 MiB cap with 552 5.3.4, retaining nothing of it', async () => {
    const pid = child.pid as number;
    const { client } = await SmtpTestClient.connect(smtpPort);
    await client.command('EHLO client.outside.test');
    const settled = async () => {
      await inspector.collectGarbage();
      const usage = await inspector.memoryUsage();
      return { rssKiB: rssKiB(pid), heldBytes: usage.heapUsed + usage.external };
    };
    expect((await client.command('MAIL FROM:<a@outside.test>')).code).toBe(250);
    expect((await client.command('RCPT TO:<big@postern.test>')).code).toBe(250);
    expect((await client.command('DATA')).code).toBe(354);
    const start = await settled();
    let peak = start.rssKiB;
    const sampler = setInterval(() => {
      peak = Math.max(peak, rssKiB(pid));
    }, 20);
    const chunk = Buffer.from(`${'x'.repeat(1022)}\r\n`.repeat(1024)); // 1 MiB of proper lines
    for (let sent = 0; sent < OVERSIZE_MIB; sent++) await client.write(chunk);
    await client.write('.\r\n');
    const reply = await client.readReply(120_000);
    clearInterval(sampler);
    peak = Math.max(peak, rssKiB(pid));
    expect(reply.raw).toBe('552 5.3.4 Message exceeds the maximum size of 1048576 bytes');
    const end = await settled();
    const peakGrowthMiB = (peak - start.rssKiB) / 1024;
    const heldGrowthMiB = (end.heldBytes - start.heldBytes) / 1024 / 1024;
    console.log(
      `[mta] ${OVERSIZE_MIB} MiB oversize DATA: edge RSS ${(start.rssKiB / 1024).toFixed(1)} MiB, transient peak +${peakGrowthMiB.toFixed(1)} MiB; ` +
        `after a full GC: V8 heap used + external ${heldGrowthMiB.toFixed(1)} MiB, RSS +${((end.rssKiB - start.rssKiB) / 1024).toFixed(1)} MiB (allocator)`,
    );
    // Buffering any part of the message, or leaving the drained buffers to V8's own schedule
    // (70-90 MiB), would show here.
    expect(peakGrowthMiB).toBeLessThan(16);
    // Retained by the process (JS heap and Buffers): nothing of the message.
    expect(heldGrowthMiB).toBeLessThan(4);
    await client.quit();
    const { rows } = await db.pool.query('SELECT count(*)::int AS n FROM mail.messages');
    expect(rows[0].n).toBe(1);
  });

  // Every line dot-stuffed (a line of one "."), as RFC 5321 4.5.2 has a sender send it: smtp-server
  // once wrote each line to the message stream on its own, an event-loop turn apiece, and the edge
  // kept one small buffer per line. 1 MiB of such lines made RSS peak some 80 MiB up (20 MiB:
  // 840 MiB, and 42 s), while the DATA memory budget counted 1 MiB.
  it('accepts a message of dot-stuffed lines, holding about its size in memory, not one buffer per line', async () => {
    const pid = child.pid as number;
    const { client } = await SmtpTestClient.connect(smtpPort);
    await client.command('EHLO client.outside.test');
    expect((await client.command('MAIL FROM:<dots@outside.test>')).code).toBe(250);
    expect((await client.command('RCPT TO:<big@postern.test>')).code).toBe(250);
    expect((await client.command('DATA')).code).toBe(354);
    await inspector.collectGarbage();
    const start = rssKiB(pid);
    let peak = start;
    const sampler = setInterval(() => {
      peak = Math.max(peak, rssKiB(pid));
    }, 20);
    const header = 'Subject: dots\r\n\r\n';
    const lines = 250_000; // 1,000,000 bytes as sent, 750,000 stored: under the 1 MiB cap either way
    await client.write(`${header}${'..\r\n'.repeat(lines)}.\r\n`);
    const reply = await client.readReply(60_000);
    clearInterval(sampler);
    peak = Math.max(peak, rssKiB(pid));
    expect(reply.raw).toMatch(/^250 2\.0\.0 queued as /);
    const peakGrowthMiB = (peak - start) / 1024;
    console.log(`[mta] 1 MB of dot-stuffed lines: edge RSS ${(start / 1024).toFixed(1)} MiB, transient peak +${peakGrowthMiB.toFixed(1)} MiB`);
    // The message a few times over (received, the stored payload, the driver's buffer): a few MiB.
    expect(peakGrowthMiB).toBeLessThan(16);
    await client.quit();
    const id = reply.raw.split(' ').pop();
    const { rows } = await db.pool.query<{ raw: Buffer }>('SELECT raw FROM mail.message_payloads WHERE message_id = $1', [id]);
    const stored = rows[0]?.raw.toString('latin1') ?? '';
    expect(stored.endsWith(`${header}${'.\r\n'.repeat(lines)}`)).toBe(true);
  });

  // A sender writing a byte per packet: the edge kept each read as a Buffer of its own (with the
  // read buffer behind it), 1 MB so peaked at +40-70 MiB that the DATA memory budget never saw.
  it('accepts a message sent a byte per packet, holding about its size in memory, not a buffer per read', async () => {
    const pid = child.pid as number;
    const { client } = await SmtpTestClient.connect(smtpPort);
    client.socket.setNoDelay(true);
    await client.command('EHLO client.outside.test');
    expect((await client.command('MAIL FROM:<bytes@outside.test>')).code).toBe(250);
    expect((await client.command('RCPT TO:<big@postern.test>')).code).toBe(250);
    expect((await client.command('DATA')).code).toBe(354);
    await inspector.collectGarbage();
    const start = rssKiB(pid);
    let peak = start;
    const sampler = setInterval(() => {
      peak = Math.max(peak, rssKiB(pid));
    }, 20);
    const body = Buffer.from(`Subject: bytes\r\n\r\n${'abcdefghijklmnopqrstuvwxyz0123456789\r\n'.repeat(16_384)}`);
    // One write per byte, each awaited: written to the socket (and so, mostly, a packet) on its own.
    for (let at = 0; at < body.length; at++) await client.write(body.subarray(at, at + 1));
    await client.write('.\r\n');
    const reply = await client.readReply(60_000);
    clearInterval(sampler);
    peak = Math.max(peak, rssKiB(pid));
    expect(reply.raw).toMatch(/^250 2\.0\.0 queued as /);
    const peakGrowthMiB = (peak - start) / 1024;
    console.log(`[mta] ${body.length} bytes a byte per write: edge RSS ${(start / 1024).toFixed(1)} MiB, transient peak +${peakGrowthMiB.toFixed(1)} MiB`);
    expect(peakGrowthMiB).toBeLessThan(16);
    await client.quit();
    const id = reply.raw.split(' ').pop();
    const { rows } = await db.pool.query<{ raw: Buffer }>('SELECT raw FROM mail.message_payloads WHERE message_id = $1', [id]);
    expect(rows[0]?.raw.subarray(-body.length).equals(body)).toBe(true);
  });

  it('on SIGTERM tells an idle session 421 4.3.2 and exits 0', async () => {
    // Node waits for an attached debugger to disconnect before it exits.
    inspector.close();
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
