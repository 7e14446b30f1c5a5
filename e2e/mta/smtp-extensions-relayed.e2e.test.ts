// BODY=8BITMIME and SMTPUTF8 given at MAIL FROM are stored with the
// message and passed to the relay by the engine ONLY when the sender used them, and the envelope
// sender is relayed in the form received: an xn-- domain stays xn-- (smtp-server decodes it, and a
// relay without SMTPUTF8 refuses the decoded form). Edge -> PostgreSQL -> engine -> capturing sink.
import { createAlias, createDomain } from '@postern/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import type { Edge } from '../../apps/mta/src/edge.ts';
import { startTestEngine } from '../core/helpers/engine.ts';
import { createTestDatabase, type TestDatabase, waitFor } from '../harness/index.ts';
import { type CapturingSink, startCapturingSink } from './helpers/capturing-sink.ts';
import { openSession, startTestEdge } from './helpers/edge.ts';
import { sendMail, simpleMessage } from './helpers/smtp-client.ts';

let db: TestDatabase;
let edge: Edge;
let engine: Engine;
let sink: CapturingSink;

beforeAll(async () => {
  db = await createTestDatabase('mta-extensions');
  await createDomain(db.pool, 'postern.test');
  for (const name of ['plain', 'eight', 'utf', 'idn']) {
    await createAlias(db.pool, { domain: 'postern.test', localPart: name, kind: 'forward', targets: [`${name}@inbox.test`] });
  }
  sink = await startCapturingSink({ smtpUtf8: true, eightBitMime: true });
  edge = await startTestEdge(db.dsn);
  engine = await startTestEngine(db.dsn, { MAIL_SMTP_ADDR: `127.0.0.1:${sink.port}` });
});

afterAll(async () => {
  await engine?.stop();
  await edge?.stop();
  await sink?.close();
  await db?.drop();
});

/** The MAIL FROM line the relay received for the delivery to `target`. */
async function relayedMailFrom(target: string): Promise<string> {
  await waitFor(`the relay to receive the message for ${target}`, () => sink.messages.some((m) => m.to.includes(target)), Boolean, {
    timeoutMs: 30_000,
  });
  // Commands arrive in order per connection; the MAIL FROM precedes its RCPT TO on the same one.
  const index = sink.commands.findIndex((command) => command.line.toLowerCase() === `rcpt to:<${target}>`);
  const connection = sink.commands[index]?.connection;
  const mailFrom = sink.commands
    .slice(0, index)
    .reverse()
    .find((command) => command.connection === connection && /^MAIL FROM:/i.test(command.line))?.line;
  if (!mailFrom) throw new Error(`no MAIL FROM before RCPT TO:<${target}>: ${JSON.stringify(sink.commands)}`);
  return mailFrom;
}

describe('SMTP extensions carried from the sender to the relay', () => {
  it('stores BODY and SMTPUTF8 as given and repeats them to the relay only when the sender used them', async () => {
    const client = await openSession(edge);
    const sends = [
      { to: 'plain@postern.test', from: 'sender@outside.test', params: undefined, message: simpleMessage('plain') },
      { to: 'eight@postern.test', from: 'sender@outside.test', params: 'BODY=8BITMIME', message: simpleMessage('eight', 'caf\u00e9\r\n') },
      { to: 'utf@postern.test', from: 'sender@outside.test', params: 'SMTPUTF8', message: simpleMessage('utf', 'gr\u00fc\u00dfe\r\n') },
      { to: 'idn@postern.test', from: 'sender@xn--bcher-kva.example', params: undefined, message: simpleMessage('idn') },
    ];
    for (const send of sends) {
      const result = await sendMail(client, { from: send.from, to: [send.to], message: send.message, ...(send.params ? { mailParams: send.params } : {}) });
      expect(result.final?.code).toBe(250);
    }
    await client.quit();

    const { rows } = await db.pool.query(
      `SELECT envelope_to[1] AS rcpt, envelope_from, smtputf8, body_type FROM mail.messages ORDER BY received_at`,
    );
    expect(rows).toEqual([
      { rcpt: 'plain@postern.test', envelope_from: 'sender@outside.test', smtputf8: false, body_type: null },
      { rcpt: 'eight@postern.test', envelope_from: 'sender@outside.test', smtputf8: false, body_type: '8bitmime' },
      { rcpt: 'utf@postern.test', envelope_from: 'sender@outside.test', smtputf8: true, body_type: null },
      { rcpt: 'idn@postern.test', envelope_from: 'sender@xn--bcher-kva.example', smtputf8: false, body_type: null },
    ]);

    expect(await relayedMailFrom('plain@inbox.test')).toBe('MAIL FROM:<sender@outside.test>');
    expect(await relayedMailFrom('eight@inbox.test')).toBe('MAIL FROM:<sender@outside.test> BODY=8BITMIME');
    expect(await relayedMailFrom('utf@inbox.test')).toBe('MAIL FROM:<sender@outside.test> SMTPUTF8');
    expect(await relayedMailFrom('idn@inbox.test')).toBe('MAIL FROM:<sender@xn--bcher-kva.example>');
  });
});
