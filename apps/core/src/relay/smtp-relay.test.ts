// MAIL_SMTP_ADDR's relay against a scripted server on a raw socket: what a pooled session does
// when the relay closed it while it was idle.
import net from 'node:net';
import { createLogger } from '@postern/shared';
import { afterEach, describe, expect, it } from 'vitest';
import { classifyFailure, defaultReplyRules } from '../delivery/classify-reply.ts';
import { lineSmtpServer } from './line-smtp.testkit.ts';
import type { OutboundMessage, Relay } from './relay.ts';
import { createSmtpRelay } from './smtp-relay.ts';

function message(n: number): OutboundMessage {
  return {
    deliveryId: `d-${n}`,
    envelopeFrom: 'sender@example.test',
    recipient: `rcpt-${n}@example.test`,
    raw: Buffer.from(`Subject: ${n}\r\n\r\nbody ${n}\r\n`),
  };
}

const servers: net.Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) await new Promise<void>((resolve) => server.close(() => resolve()));
});

interface RelayServer {
  port: number;
  sockets: net.Socket[];
  mailFrom: string[];
  /** The next MAIL FROM is answered 250, and then the connection closed. */
  closeAfterNextMail(): void;
}

async function relayServer(): Promise<RelayServer> {
  const sockets: net.Socket[] = [];
  const mailFrom: string[] = [];
  let closeAfterMail = false;
  const server = lineSmtpServer({
    greeting: '220 relay.test ready',
    ehlo: ['relay.test', 'PIPELINING'],
    onCommand: (line, socket) => {
      if (!line.toUpperCase().startsWith('MAIL FROM')) return false;
      mailFrom.push(line);
      if (!closeAfterMail) return false;
      closeAfterMail = false;
      socket.end('250 2.1.0 ok\r\n');
      return true;
    },
  });
  server.on('connection', (socket) => sockets.push(socket));
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    port: (server.address() as net.AddressInfo).port,
    sockets,
    mailFrom,
    closeAfterNextMail: () => {
      closeAfterMail = true;
    },
  };
}

/** MAIL_SMTP_ADDR's relay with one pooled session. */
function relayTo(port: number, timeoutMs = 5_000, localName?: string): Relay {
  return createSmtpRelay({
    ...(localName ? { localName } : {}),
    host: '127.0.0.1',
    port,
    username: undefined,
    password: undefined,
    timeoutMs,
    sendDeadlineMs: 4 * timeoutMs,
    maxConnections: 1,
    logger: createLogger('smtp-relay-test', 'silent'),
  });
}

describe('the EHLO name', () => {
  it('is MAIL_MTA_HOSTNAME when set: a relay that wants a fully qualified name refused the bare hostname at every RCPT TO', async () => {
    const server = lineSmtpServer({ greeting: '220 relay.test ready', ehlo: ['relay.test'] });
    const ehlo: string[] = [];
    server.on('connection', (socket) =>
      socket.on('data', (chunk: Buffer) => {
        for (const line of chunk.toString('utf8').split('\r\n')) if (/^EHLO /i.test(line)) ehlo.push(line);
      }),
    );
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    const relay = relayTo((server.address() as net.AddressInfo).port, 5_000, 'mx1.example.test');
    try {
      expect((await relay.send(message(1))).ok).toBe(true);
      expect(ehlo).toEqual(['EHLO mx1.example.test']);
    } finally {
      await relay.close();
    }
  });
});

describe('a pooled session the relay closed while it was idle', () => {
  it('sends the next message on a fresh session instead of failing it before a single reply', async () => {
    const server = await relayServer();
    const relay = relayTo(server.port);
    try {
      expect(await relay.send(message(1))).toMatchObject({ ok: true });
      // The relay drops the idle session (its idle timeout, a restart); the engine's next send
      // starts in the same turn, before the close is seen: it takes the pooled session.
      server.sockets[0]?.destroy();
      const second = await relay.send(message(2));
      expect(second).toMatchObject({ ok: true });
      expect(server.sockets).toHaveLength(2);
      expect(server.mailFrom).toHaveLength(2);
    } finally {
      await relay.close();
    }
  });

  it('is not sent again when the relay had heard the transaction: a reply, then the close, fails it', async () => {
    const server = await relayServer();
    const relay = relayTo(server.port);
    try {
      expect(await relay.send(message(1))).toMatchObject({ ok: true });
      // A relay that answers the next MAIL FROM and then closes heard the transaction: no fresh
      // try, though nothing of the message went out.
      server.closeAfterNextMail();
      const second = await relay.send(message(2));
      expect(second).toMatchObject({ ok: false, failure: { kind: 'connection', dataSent: false } });
      expect(server.sockets).toHaveLength(1);
    } finally {
      await relay.close();
    }
  });
});

describe('an interrupt (shutdown) while a session is being set up', () => {
  it('closes the connection still waiting for its greeting: the send ends at once, as interrupted', async () => {
    // A relay that accepts the connection and never greets: the probe relay-health.ts sends to it
    // is exactly such a send. The interrupt must reach it, or shutdown waits out the greeting
    // timeout and the delivery is left to its lease (an outcome_unknown attempt minutes later).
    const sockets: net.Socket[] = [];
    const server = net.createServer((socket) => sockets.push(socket));
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    // Far longer than the wait below: only the interrupt can end the send in time.
    const relay = relayTo((server.address() as net.AddressInfo).port, 60_000);
    try {
      const sending = relay.send(message(1));
      await expect.poll(() => sockets.length, { timeout: 10_000 }).toBe(1);
      relay.interrupt();
      const ended = await Promise.race([sending, new Promise<'still waiting'>((resolve) => setTimeout(() => resolve('still waiting'), 10_000))]);
      expect(ended).toMatchObject({ ok: false, failure: { interrupted: true, inSetup: true } });
    } finally {
      for (const socket of sockets) socket.destroy();
      await relay.close();
    }
  });
});

describe('an interrupt (shutdown) while the relay has not answered the end of the message', () => {
  it('ends the send at once, as interrupted with the data sent, though nodemailer never calls a closed send back', async () => {
    // A relay that takes the whole message and never answers its end: an engine stopping meets
    // such a send and interrupts it. Closing the connection drops nodemailer's send callback;
    // unless the close itself ends the send, it waits out the whole-send deadline (10 x
    // MAIL_SMTP_TIMEOUT, 5 minutes by default) and the shutdown leaves the delivery to its lease.
    let messagesEnded = 0;
    const server = lineSmtpServer({
      greeting: '220 relay.test ready',
      ehlo: ['relay.test'],
      onMessage: () => {
        messagesEnded += 1;
        return Buffer.alloc(0);
      },
    });
    const sockets: net.Socket[] = [];
    server.on('connection', (socket) => sockets.push(socket));
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    // Far longer than the wait below: only the interrupt can end the send in time.
    const relay = relayTo((server.address() as net.AddressInfo).port, 60_000);
    try {
      const sending = relay.send(message(1));
      await expect.poll(() => messagesEnded, { timeout: 10_000 }).toBe(1);
      relay.interrupt();
      const ended = await Promise.race([sending, new Promise<'still waiting'>((resolve) => setTimeout(() => resolve('still waiting'), 10_000))]);
      expect(ended).toMatchObject({ ok: false, failure: { interrupted: true, dataSent: true } });
    } finally {
      for (const socket of sockets) socket.destroy();
      await relay.close();
    }
  });
});

describe('the step a refusal came at, as nodemailer reports it', () => {
  /** A relay that answers one command (by its verb, or '.' for the end of data) with `reply`. */
  async function refusingAt(verb: string, reply: string, ehlo = ['relay.test', 'PIPELINING']): Promise<number> {
    const server = lineSmtpServer({
      greeting: '220 relay.test ready',
      ehlo,
      onCommand: (line, socket) => {
        if (!line.toUpperCase().startsWith(verb)) return false;
        socket.write(reply);
        return true;
      },
      ...(verb === '.' ? { onMessage: () => reply.replace(/\r\n$/, '') } : {}),
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    return (server.address() as net.AddressInfo).port;
  }

  it.each([
    ['MAIL', '552 5.3.4 too big\r\n', 'mail', false],
    ['RCPT', '552 Too many recipients\r\n', 'rcpt', false],
    ['DATA', '552 5.3.4 too big\r\n', 'data', false],
    ['.', '552 5.3.4 Message size exceeds fixed limit\r\n', 'end_of_data', true],
  ])('%s answered %j: stage %s, with and without PIPELINING', async (verb, reply, stage, dataSent) => {
    for (const ehlo of [['relay.test', 'PIPELINING'], ['relay.test']]) {
      const relay = relayTo(await refusingAt(verb, reply, ehlo));
      try {
        expect(await relay.send(message(1))).toMatchObject({ ok: false, failure: { kind: 'reply', reply: { code: 552 }, stage, dataSent } });
      } finally {
        await relay.close();
      }
    }
  });
});

// RFC 5321 4.2.1: every line of a reply carries the same code. nodemailer decided by a reply's
// first character and took a line after a bare LF for the next reply: "250-OK" then "550 no such
// user" to RCPT TO went on to DATA and was recorded sent; "250 ok<LF>550 ..." to MAIL FROM gave
// the 550 to RCPT TO and failed the delivery for good. Whatever step it answers, a reply that is
// not one is a protocol error: retried, the session closed, never sent, never a refusal.
describe('a reply whose lines disagree, at every step', () => {
  const malformed: Record<string, (code: string) => string> = {
    'lines disagree': (code) => `${code}-OK\r\n550 5.1.1 no such user\r\n`,
    'lines disagree, refusal first': (code) => `550-5.1.1 no such user\r\n${code} ok\r\n`,
    'a second reply after a bare LF': (code) => `${code} ok\n550 5.1.1 no such user\r\n`,
    'a line without a code': (code) => `${code}-ok\r\nno code here\r\n`,
  };
  const steps: Array<[string, string, boolean]> = [
    ['EHLO', '250', false],
    ['MAIL', '250', false],
    ['RCPT', '250', false],
    ['DATA', '354', false],
    ['.', '250', true],
  ];

  async function answering(verb: string, reply: string, pipelining: boolean): Promise<{ port: number; messages: () => number }> {
    let messages = 0;
    const server = lineSmtpServer({
      greeting: '220 relay.test ready',
      ehlo: ['relay.test', ...(pipelining ? ['PIPELINING'] : [])],
      ...(verb === 'EHLO' ? { ehloReply: Buffer.from(reply) } : {}),
      onCommand: (line, socket) => {
        if (verb === '.' || verb === 'EHLO' || !line.toUpperCase().startsWith(verb)) return false;
        socket.write(reply);
        return true;
      },
      onMessage: () => {
        messages += 1;
        return verb === '.' ? Buffer.from(reply) : '250 2.0.0 queued';
      },
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    return { port: (server.address() as net.AddressInfo).port, messages: () => messages };
  }

  for (const [verb, code, dataSent] of steps) {
    it.each(Object.entries(malformed))(`${verb}: %s -> no reply, a protocol error, retried`, async (_, make) => {
      for (const pipelining of [true, false]) {
        const server = await answering(verb, make(code), pipelining);
        const relay = relayTo(server.port, 2_000);
        try {
          const result = await relay.send(message(1));
          expect({ pipelining, result }).toMatchObject({ pipelining, result: { ok: false, failure: { reply: null, category: 'malformed_reply', dataSent } } });
          if (!result.ok) expect(result.failure.message).toMatch(/^EPROTOCOL: Malformed reply/);
          if (!result.ok) expect(classifyFailure(defaultReplyRules(), result.failure)).toMatchObject({ action: 'retry', attemptStatus: dataSent ? 'outcome_unknown' : 'transport_failed' });
          // Nothing went out after a malformed reply before the data.
          if (!dataSent) expect(server.messages()).toBe(0);
        } finally {
          await relay.close();
        }
      }
    });
  }
});

describe('a relay that ends every line with a bare LF', () => {
  it('is still read: only a bare LF among CRLF lines is malformed', async () => {
    for (const pipelining of [true, false]) {
      const server = lineSmtpServer({ greeting: '220 relay.test ready', ehlo: ['relay.test', ...(pipelining ? ['PIPELINING'] : [])], lineEnd: '\n' });
      servers.push(server);
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
      const relay = relayTo((server.address() as net.AddressInfo).port);
      try {
        expect(await relay.send(message(1))).toMatchObject({ ok: true, reply: { code: 250, enhanced: '2.0.0', text: 'queued' } });
      } finally {
        await relay.close();
      }
    }
  });
});
