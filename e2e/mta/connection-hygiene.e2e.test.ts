// Connection hygiene against misbehaving clients: a sender trickling DATA past the whole-DATA
// deadline, one client sending too many messages, too many clients at once, a client talking before
// the greeting, and a graceful stop that lets a transaction under way finish and sends away a client
// it has not greeted yet.
import net from 'node:net';
import { createAlias, createDomain } from '@postern/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Edge } from '../../apps/mta/src/edge.ts';
import { createTestDatabase, type TestDatabase, waitFor } from '../harness/index.ts';
import { metricsText, openSession, startTestEdge } from './helpers/edge.ts';
import { SmtpTestClient } from './helpers/smtp-client.ts';

let db: TestDatabase;
const edges: Edge[] = [];

async function edgeWith(env: Record<string, string>): Promise<Edge> {
  const edge = await startTestEdge(db.dsn, env);
  edges.push(edge);
  return edge;
}

/** Sends EHLO and QUIT the moment the connection is open, before any greeting; the reply lines. */
async function talkFirst(edge: Edge, localAddress: string): Promise<string[]> {
  const socket = net.connect({ port: edge.smtp.port, host: '127.0.0.1', localAddress });
  let received = '';
  socket.setEncoding('latin1');
  socket.on('data', (data: string) => {
    received += data;
  });
  socket.on('error', () => {});
  socket.once('connect', () => socket.write('EHLO client.outside.test\r\nQUIT\r\n'));
  await new Promise((resolve) => socket.once('close', resolve));
  return received.split('\r\n').filter((line) => line !== '');
}

beforeAll(async () => {
  db = await createTestDatabase('mta-hygiene');
  await createDomain(db.pool, 'postern.test');
  await createAlias(db.pool, { domain: 'postern.test', localPart: 'one', kind: 'forward', targets: ['one@inbox.test'] });
});

afterAll(async () => {
  await Promise.all(edges.map((edge) => edge.stop()));
  await db?.drop();
});

describe('connection hygiene', () => {
  it('a slow sender trickling DATA is cut at the whole-DATA deadline with 421 4.4.2, nothing stored', async () => {
    const edge = await edgeWith({ MAIL_MTA_DATA_TIMEOUT: '1s', MAIL_MTA_IDLE_TIMEOUT: '30s' });
    const client = await openSession(edge);
    expect((await client.command('MAIL FROM:<slow@outside.test>')).code).toBe(250);
    expect((await client.command('RCPT TO:<one@postern.test>')).code).toBe(250);
    expect((await client.command('DATA')).code).toBe(354);
    // One byte every 50 ms keeps the idle timeout happy forever; the DATA deadline does not care.
    const trickle = setInterval(() => {
      if (!client.isClosed) client.socket.write('x');
    }, 50);
    try {
      const reply = await client.readReply(15_000);
      expect(reply.raw).toBe('421 4.4.2 DATA not completed within 1 s, closing connection');
      await client.closed;
    } finally {
      clearInterval(trickle);
    }
    const { rows } = await db.pool.query("SELECT count(*)::int AS n FROM mail.messages WHERE envelope_from = 'slow@outside.test'");
    expect(rows[0].n).toBe(0);
  });

  it('a client trickling a command line a byte at a time is cut at MAIL_MTA_IDLE_TIMEOUT with 421 4.4.2, and its slot goes to the next client', async () => {
    const edge = await edgeWith({ MAIL_MTA_IDLE_TIMEOUT: '1s', MAIL_MTA_MAX_CLIENTS: '1' });
    const client = await openSession(edge);
    // One byte every 100 ms re-arms the idle timeout for ever; the line never ends.
    client.socket.write('MAIL FROM:<');
    const trickle = setInterval(() => {
      if (!client.isClosed) client.socket.write('x');
    }, 100);
    try {
      // Meanwhile it holds the only slot.
      const { client: other, greeting } = await SmtpTestClient.connect(edge.smtp.port);
      expect(greeting.code).toBe(421);
      await other.closed;
      const reply = await client.readReply(15_000);
      expect(reply.raw).toBe('421 4.4.2 Timeout - closing connection');
      await client.closed;
    } finally {
      clearInterval(trickle);
    }
    const next = await waitFor('the slot to be free', async () => {
      const { client: candidate, greeting } = await SmtpTestClient.connect(edge.smtp.port);
      if (greeting.code !== 220) await candidate.closed;
      return greeting.code === 220 ? candidate : null;
    });
    await next?.quit();
    expect(await metricsText(edge)).toMatch(/^mail_mta_command_line_timeouts_total(\{[^}]*\})? 1$/m);
  });

  it('limits messages per client IP: past the limit MAIL FROM gets 451 4.7.1', async () => {
    const edge = await edgeWith({ MAIL_MTA_RATE_LIMIT_PER_MINUTE: '3' });
    const client = await openSession(edge);
    const replies = [];
    for (let i = 0; i < 4; i++) {
      replies.push(await client.command('MAIL FROM:<busy@outside.test>'));
      await client.command('RSET');
    }
    expect(replies.map((reply) => reply.code)).toEqual([250, 250, 250, 451]);
    expect(replies[3]?.raw).toBe('451 4.7.1 Too many messages from your address (limit 3/min), try again later');
    await client.quit();
  });

  it('refuses clients past MAIL_MTA_MAX_CLIENTS with 421; the refused ones are not counted as open or closed', async () => {
    const edge = await edgeWith({ MAIL_MTA_MAX_CLIENTS: '2' });
    const first = await openSession(edge);
    const second = await openSession(edge);
    for (let refused = 0; refused < 3; refused++) {
      const { client: extra, greeting } = await SmtpTestClient.connect(edge.smtp.port);
      expect(greeting.code).toBe(421);
      await extra.closed;
    }
    await first.quit();
    await waitFor('a slot to free up', async () => {
      const { client, greeting: next } = await SmtpTestClient.connect(edge.smtp.port);
      client.close();
      return next.code;
    }, (code) => code === 220);
    await second.quit();
    // Every connection greeted has closed: none is open, whatever was refused on the way.
    const active = await waitFor(
      'every session to close',
      async () => /^mail_mta_connections_active(?:\{[^}]*\})? (-?\d+)$/m.exec(await metricsText(edge))?.[1],
      (value) => value === '0' || Number(value) < 0,
    );
    expect(active).toBe('0');
  });

  it('refuses a client network past MAIL_MTA_MAX_CLIENTS_PER_NETWORK with 421 4.7.0 while other networks are greeted; a closed session frees a place', async () => {
    const edge = await edgeWith({ MAIL_MTA_MAX_CLIENTS_PER_NETWORK: '3' });
    // Each holds its slot as a real client would: greeted, then idle (a NOOP every few minutes is enough).
    const held = await Promise.all([1, 2, 3].map(async () => (await SmtpTestClient.connect(edge.smtp.port, '127.0.0.1', '127.0.0.5')).client));
    const { client: fourth, greeting: refused } = await SmtpTestClient.connect(edge.smtp.port, '127.0.0.1', '127.0.0.5');
    expect(refused.raw).toBe('421 4.7.0 Too many connections from your network (at most 3), try again later');
    await fourth.closed;
    // Another client network is not held back by that one.
    const { client: other, greeting } = await SmtpTestClient.connect(edge.smtp.port, '127.0.0.1', '127.0.0.6');
    expect(greeting.code).toBe(220);
    await other.quit();
    expect(await metricsText(edge)).toMatch(/^mail_mta_rejections_total\{(?:[^}]*,)?stage="connect",reason="too_many_connections"(?:,[^}]*)?\} 1$/m);
    await held[0]?.quit();
    await waitFor('a place of that network to free up', async () => {
      const { client, greeting: next } = await SmtpTestClient.connect(edge.smtp.port, '127.0.0.1', '127.0.0.5');
      client.close();
      return next.code;
    }, (code) => code === 220);
    for (const client of held.slice(1)) await client?.quit();
  });

  it('MAIL_MTA_GREETING_DELAY: an early talker gets 421 and is counted; a client that waited once is greeted at once after', async () => {
    // Long enough that a talking client's bytes are in before it on a loaded machine.
    const edge = await edgeWith({ MAIL_MTA_GREETING_DELAY: '2s' });
    expect(await talkFirst(edge, '127.0.0.1')).toEqual([expect.stringMatching(/^421 .*You talk too soon$/)]);
    expect(await metricsText(edge)).toMatch(/^mail_mta_early_talkers_total(?:{[^}]*})? 1$/m);
    const { client: patient, greeting } = await SmtpTestClient.connect(edge.smtp.port);
    expect(greeting.code).toBe(220);
    await patient.quit();
    // Remembered: greeted at once, so talking first is no longer early. Another client is not.
    const lines = await talkFirst(edge, '127.0.0.1');
    expect([lines[0]?.slice(0, 4), lines.at(-1)?.slice(0, 4)]).toEqual(['220 ', '221 ']);
    expect(await talkFirst(edge, '127.0.0.2')).toEqual([expect.stringMatching(/^421 .*You talk too soon$/)]);
    expect(await metricsText(edge)).toMatch(/^mail_mta_early_talkers_total(?:{[^}]*})? 2$/m);
  });

  it('greets at once by default: a client that talks first is served', async () => {
    const edge = await edgeWith({});
    const lines = await talkFirst(edge, '127.0.0.1');
    expect([lines[0]?.slice(0, 4), lines.at(-1)?.slice(0, 4)]).toEqual(['220 ', '221 ']);
  });

  it('stops gracefully: idle sessions get 421, a transaction under way finishes with 250, then the listener is gone', async () => {
    const edge = await startTestEdge(db.dsn);
    const idle = await openSession(edge);
    const busy = await openSession(edge);
    expect((await busy.command('MAIL FROM:<late@outside.test>')).code).toBe(250);
    expect((await busy.command('RCPT TO:<one@postern.test>')).code).toBe(250);
    const stopped = edge.stop();
    expect((await idle.readReply()).raw).toBe('421 4.3.2 Service shutting down, try again later');
    expect((await busy.command('DATA')).code).toBe(354);
    await busy.write('Subject: finishing\r\n\r\nlast words\r\n.\r\n');
    expect((await busy.readReply()).raw).toMatch(/^250 2\.0\.0 queued as /);
    // The next transaction is refused, and the stop completes.
    expect((await busy.command('MAIL FROM:<late@outside.test>')).raw).toBe('421 4.3.2 Service shutting down, try again later');
    await stopped;
    await expect(SmtpTestClient.connect(edge.smtp.port)).rejects.toThrow(/ECONNREFUSED/);
  });

  it('stops cleanly with a client connected and not yet greeted (during MAIL_MTA_GREETING_DELAY): 421, no error', async () => {
    const edge = await startTestEdge(db.dsn, { MAIL_MTA_GREETING_DELAY: '5s' });
    const socket = net.connect(edge.smtp.port, '127.0.0.1');
    let received = '';
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('latin1');
    });
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    // The edge (in this process) accepts in the event loop's next poll at the latest: two turns.
    for (let turn = 0; turn < 2; turn++) await new Promise((resolve) => setImmediate(resolve));
    await expect(edge.stop()).resolves.toBeUndefined();
    await closed;
    expect(received).toBe('421 4.3.2 Service shutting down, try again later\r\n');
  });
});
