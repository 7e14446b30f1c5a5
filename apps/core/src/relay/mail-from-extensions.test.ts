// The MAIL FROM line nodemailer writes for relayEnvelope(), against a scripted relay on a loopback
// socket. The SMTPUTF8 case needs nodemailer's envelope useSmtpUtf8 (patches/nodemailer+10.6.0.patch):
// an install where the patch did not apply fails here.
import type net from 'node:net';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { afterEach, describe, expect, it } from 'vitest';
import { lineSmtpServer } from './line-smtp.testkit.ts';
import { relayEnvelope } from './mail-from-extensions.ts';
import type { OutboundMessage } from './relay.ts';

const servers: net.Server[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
});

/** A relay that advertises `extensions`, accepts everything and records the MAIL FROM lines. */
async function scriptedRelay(extensions: string[]) {
  const mailFrom: string[] = [];
  const server = lineSmtpServer({
    greeting: '220 relay.test ESMTP',
    ehlo: ['relay.test', ...extensions, 'PIPELINING'],
    onCommand(line, socket) {
      const verb = line.slice(0, 4).toUpperCase();
      if (verb === 'MAIL') {
        mailFrom.push(line);
        socket.write('250 2.1.0 ok\r\n');
        return true;
      }
      if (verb === 'RCPT') {
        socket.write('250 2.1.5 ok\r\n');
        return true;
      }
      return false;
    },
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return { port: (server.address() as net.AddressInfo).port, mailFrom };
}

async function relayed(extensions: string[], message: Partial<OutboundMessage>): Promise<string | undefined> {
  const relay = await scriptedRelay(extensions);
  const connection = new SMTPConnection({ host: '127.0.0.1', port: relay.port, ignoreTLS: true, name: 'engine.test' });
  await new Promise<void>((resolve, reject) => {
    connection.once('error', reject);
    connection.connect(() => resolve());
  });
  const outbound: OutboundMessage = { deliveryId: 'd', envelopeFrom: 'a@sender.test', recipient: 'b@inbox.test', raw: Buffer.from('Subject: x\r\n\r\nx\r\n'), ...message };
  await new Promise<void>((resolve, reject) => connection.send(relayEnvelope(outbound), outbound.raw, (error) => (error ? reject(error) : resolve())));
  connection.quit();
  return relay.mailFrom[0];
}

describe('relayEnvelope', () => {
  it('declares SMTPUTF8 for an ASCII envelope when the sender used it and the relay offers it', async () => {
    expect(await relayed(['SMTPUTF8', '8BITMIME'], { smtpUtf8: true, body8BitMime: true })).toBe('MAIL FROM:<a@sender.test> SMTPUTF8 BODY=8BITMIME');
  });

  it('declares nothing the sender did not use, and nothing the relay does not offer', async () => {
    expect(await relayed(['SMTPUTF8', '8BITMIME'], {})).toBe('MAIL FROM:<a@sender.test>');
    expect(await relayed(['8BITMIME'], { smtpUtf8: true })).toBe('MAIL FROM:<a@sender.test>');
  });
});
