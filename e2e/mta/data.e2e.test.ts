// DATA on a real socket: smuggling payloads refused, the size cap enforced on the bytes, the
// durable accept (exact delivery rows, byte-identical payload plus the trace header), and the
// commit failing leaving nothing half-stored.
import { createAlias, createDomain } from '@postern/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Edge } from '../../apps/mta/src/edge.ts';
import { createTestDatabase, metricSample, type TestDatabase } from '../harness/index.ts';
import { metricsText, openSession, startTestEdge, TEST_HOSTNAME } from './helpers/edge.ts';
import { type SmtpTestClient, sendMail, simpleMessage } from './helpers/smtp-client.ts';

let db: TestDatabase;
let edge: Edge;

const listMembers = Array.from({ length: 47 }, (_, i) => `member${String(i).padStart(2, '0')}@lists.test`);

beforeAll(async () => {
  db = await createTestDatabase('mta-data');
  await createDomain(db.pool, 'postern.test');
  await createAlias(db.pool, { domain: 'postern.test', localPart: 'one', kind: 'forward', targets: ['one@inbox.test'] });
  await createAlias(db.pool, { domain: 'postern.test', localPart: 'two', kind: 'forward', targets: ['two-a@inbox.test', 'two-b@inbox.test'] });
  await createAlias(db.pool, { domain: 'postern.test', localPart: 'team', kind: 'list', targets: listMembers });
  edge = await startTestEdge(db.dsn, { MAIL_MTA_MAX_MESSAGE_SIZE: '64KiB' });
});

afterAll(async () => {
  await edge?.stop();
  await db?.drop();
});

async function counts() {
  const { rows } = await db.pool.query(`SELECT (SELECT count(*) FROM mail.messages)::int AS messages,
    (SELECT count(*) FROM mail.message_payloads)::int AS payloads, (SELECT count(*) FROM mail.deliveries)::int AS deliveries`);
  return rows[0] as { messages: number; payloads: number; deliveries: number };
}

/** MAIL, RCPT, DATA, then the raw bytes exactly as given (no dot-stuffing, no terminator added). */
async function rawData(client: SmtpTestClient, bytes: string) {
  expect((await client.command('MAIL FROM:<sender@outside.test>')).code).toBe(250);
  expect((await client.command('RCPT TO:<one@postern.test>')).code).toBe(250);
  expect((await client.command('DATA')).code).toBe(354);
  await client.write(Buffer.from(bytes, 'latin1'));
  return client.readReply();
}

describe('durable accept', () => {
  it('a message to 3 aliases (forward, forward x2, list of 47) makes exactly 50 deliveries and stores the bytes as sent', async () => {
    const client = await openSession(edge, 'sender.outside.test');
    const body = `From: Sender <sender@outside.test>\r\nTo: team@postern.test\r\nSubject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\nMessage-ID: <fifty@outside.test>\r\n\r\nline one\r\n.dot-led line\r\n\r\n\tend\r\n`;
    const result = await sendMail(client, { from: 'sender@outside.test', to: ['one@postern.test', 'Two@postern.test', 'team@postern.test'], message: body });
    await client.quit();
    expect(result.rcpts.map((reply) => reply.code)).toEqual([250, 250, 250]);
    expect(result.final?.raw).toMatch(/^250 2\.0\.0 queued as [0-9a-f-]{36}$/);
    const messageId = result.final?.raw.split(' ').pop();

    const message = await db.pool.query('SELECT * FROM mail.messages WHERE id = $1', [messageId]);
    expect(message.rows[0]).toMatchObject({
      envelope_from: 'sender@outside.test',
      envelope_to: ['one@postern.test', 'two@postern.test', 'team@postern.test'],
      helo: 'sender.outside.test',
      message_id_header: '<fifty@outside.test>',
      subject: 'Grüße',
      from_header: '"Sender" <sender@outside.test>',
      size_bytes: String(Buffer.byteLength(body)),
    });

    const deliveries = await db.pool.query(
      'SELECT recipient, source, payload_mode, status, envelope_from, rfc_message_id, next_attempt_at FROM mail.deliveries WHERE message_id = $1 ORDER BY recipient',
      [messageId],
    );
    const expected = ['one@inbox.test', 'two-a@inbox.test', 'two-b@inbox.test', ...listMembers].sort();
    expect(deliveries.rows.map((row) => row.recipient)).toEqual(expected);
    for (const row of deliveries.rows) {
      expect(row).toMatchObject({ source: 'smtp', payload_mode: 'relay', status: 'queued', envelope_from: 'sender@outside.test' });
      expect(row.rfc_message_id).toMatch(new RegExp(`^<[0-9a-f-]{36}@${TEST_HOSTNAME.replace(/\./g, '\\.')}>$`));
      expect(row.next_attempt_at).not.toBeNull();
    }

    const payload = await db.pool.query('SELECT raw FROM mail.message_payloads WHERE message_id = $1', [messageId]);
    const raw: Buffer = payload.rows[0].raw;
    const headerEnd = raw.indexOf(Buffer.from('From: Sender'));
    const trace = raw.subarray(0, headerEnd).toString();
    // MAIL_INBOUND_AUTH_POLICY=annotate (the default): the Authentication-Results header comes first.
    expect(trace).toMatch(/^Authentication-Results: mx\.postern\.test;(?:\r\n\t[^\r]*)*\r\nReceived: from sender\.outside\.test \(\[127\.0\.0\.1\]\)\r\n\tby mx\.postern\.test \(Postern\) with ESMTP id \S+;\r\n\t\w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d \+0000\r\n$/);
    // Byte-identical to what was sent (dot-stuffing undone), after the trace header.
    expect(raw.subarray(headerEnd).equals(Buffer.from(body))).toBe(true);
  });

  it('answers 451 4.3.0 when the commit fails, stores nothing of the message, and counts it for PosternEdgeAcceptsFailing', async () => {
    // The series the alert reads; absent until the first failure.
    const failedAccepts = async () => metricSample(await metricsText(edge), 'mail_mta_accept_duration_ms_count{outcome="failed"}') || 0;
    const failedBefore = await failedAccepts();
    const before = await counts();
    // A real failure inside the transaction: the last insert (deliveries) is refused by PostgreSQL.
    await db.pool.query(`CREATE OR REPLACE FUNCTION public.fail_deliveries() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'injected failure'; END $$`);
    await db.pool.query('CREATE TRIGGER fail_deliveries BEFORE INSERT ON mail.deliveries FOR EACH ROW EXECUTE FUNCTION public.fail_deliveries()');
    try {
      const client = await openSession(edge);
      const result = await sendMail(client, { from: 'sender@outside.test', to: ['team@postern.test'], message: simpleMessage('doomed') });
      await client.quit();
      expect(result.final?.raw).toBe('451 4.3.0 Temporary failure storing the message, try again later');
      expect(await counts()).toEqual(before);
      expect(await failedAccepts()).toBe(failedBefore + 1);
    } finally {
      await db.pool.query('DROP TRIGGER fail_deliveries ON mail.deliveries');
    }
    const client = await openSession(edge);
    const retry = await sendMail(client, { from: 'sender@outside.test', to: ['one@postern.test'], message: simpleMessage('retried') });
    await client.quit();
    expect(retry.final?.code).toBe(250);
  });
});

describe('DATA: SMTP smuggling', () => {
  // Each payload hides a second message after a false end of data; a lenient server would end the
  // first message there and run the smuggled MAIL FROM as a command of its own.
  const smuggled = 'MAIL FROM:<admin@victim.test>\r\nRCPT TO:<one@postern.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n';
  it.each([
    ['<LF>.<CR><LF>', '\n.\r\n'],
    ['<LF>.<LF>', '\n.\n'],
    ['<CR><LF>.<LF>', '\r\n.\n'],
    ['<CR>.<CR>', '\r.\r'],
    ['<CR><CR><LF>.<CR><LF>', '\r\r\n.\r\n'],
    ['<CR><LF>.<CR>', '\r\n.\r'],
    ['<LF>.<CR>', '\n.\r'],
  ])('%s: the whole message is refused with 5xx and nothing smuggled runs', async (_name, falseEnd) => {
    const before = await counts();
    const client = await openSession(edge);
    const reply = await rawData(client, `Subject: carrier\r\n\r\nhello${falseEnd}${smuggled}.\r\n`);
    expect(reply.raw).toBe('554 5.6.0 Message refused: bare CR or LF in DATA; lines must end with CRLF (SMTP smuggling protection)');
    // Whether the false end was content (most variants) or a real <CR><LF>.<CR><LF> after a bare CR
    // (<CR><CR><LF>.<CR><LF>), the edge disconnects: nothing pipelined behind is run as a command.
    await client.closed;
    expect(await counts()).toEqual(before);
  });

  it('only <CR><LF>.<CR><LF> ends a message: a proper message after the refused one is accepted', async () => {
    const refused = await openSession(edge);
    expect((await rawData(refused, 'Subject: a\r\n\r\nx\n.\r\n.\r\n')).code).toBe(554);
    await refused.closed;
    const client = await openSession(edge);
    const ok = await rawData(client, 'Subject: b\r\n\r\n..leading dot\r\nlast\r\n.\r\n');
    expect(ok.code).toBe(250);
    await client.quit();
  });
});

describe('DATA: size cap on the bytes', () => {
  it('drains an oversize message and answers 552 5.3.4 after the final dot', async () => {
    const before = await counts();
    const client = await openSession(edge);
    const line = `${'x'.repeat(998)}\r\n`;
    const reply = await rawData(client, `Subject: big\r\n\r\n${line.repeat(100)}.\r\n`);
    expect(reply.raw).toBe('552 5.3.4 Message exceeds the maximum size of 65536 bytes');
    expect((await client.command('NOOP')).code).toBe(250);
    await client.quit();
    expect(await counts()).toEqual(before);
  });

  it('refuses MAIL FROM with a declared SIZE over the cap', async () => {
    const client = await openSession(edge);
    const reply = await client.command('MAIL FROM:<sender@outside.test> SIZE=1000000');
    expect(reply.code).toBe(552);
    expect(reply.enhanced).toBe('5.3.4');
    await client.quit();
  });
});
