// Every reply at RCPT TO, on a real socket, against the live alias tables of a real PostgreSQL.
import { createAlias, createDomain, setDomainEnabled } from '@postern/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Edge } from '../../apps/mta/src/edge.ts';
import { createTestDatabase, type TestDatabase } from '../harness/index.ts';
import { metricsText, openSession, startTestEdge } from './helpers/edge.ts';
import type { SmtpTestClient } from './helpers/smtp-client.ts';

let db: TestDatabase;
let edge: Edge;

beforeAll(async () => {
  db = await createTestDatabase('mta-rcpt');
  await createDomain(db.pool, 'postern.test');
  await createDomain(db.pool, 'catchall.test');
  await createDomain(db.pool, 'bücher.example');
  await createDomain(db.pool, 'off.test');
  await setDomainEnabled(db.pool, 'off.test', false);
  await createAlias(db.pool, { domain: 'postern.test', localPart: 'sales', kind: 'forward', targets: ['sales@inbox.test'] });
  await createAlias(db.pool, { domain: 'postern.test', localPart: 'paused', kind: 'forward', targets: ['p@inbox.test'], enabled: false });
  await createAlias(db.pool, { domain: 'catchall.test', localPart: null, kind: 'forward', targets: ['all@inbox.test'] });
  await createAlias(db.pool, { domain: 'catchall.test', localPart: 'blocked', kind: 'forward', targets: ['b@inbox.test'], enabled: false });
  await createAlias(db.pool, { domain: 'bücher.example', localPart: 'info', kind: 'forward', targets: ['info@inbox.test'] });
  await createAlias(db.pool, { domain: 'off.test', localPart: 'x', kind: 'forward', targets: ['x@inbox.test'] });
  await createAlias(db.pool, { domain: 'postern.test', localPart: 'jösé', kind: 'forward', targets: ['jose@inbox.test'] });
  edge = await startTestEdge(db.dsn);
});

afterAll(async () => {
  await edge?.stop();
  await db?.drop();
});

async function rcpt(to: string, options: { mailParams?: string; client?: SmtpTestClient } = {}) {
  const client = options.client ?? (await openSession(edge));
  const mail = await client.command(`MAIL FROM:<sender@outside.test>${options.mailParams ? ` ${options.mailParams}` : ''}`);
  expect(mail.code).toBe(250);
  const reply = await client.command(`RCPT TO:<${to}>`);
  if (!options.client) await client.quit();
  return reply;
}

describe('RCPT TO replies', () => {
  it('advertises only what it honours in EHLO', async () => {
    const client = await openSession(edge);
    const ehlo = await client.command('EHLO again.outside.test');
    const features = ehlo.lines.slice(1).map((line) => line.slice(4));
    expect(features).toEqual(expect.arrayContaining(['PIPELINING', '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES']));
    expect(features.some((feature) => /^SIZE \d+$/.test(feature))).toBe(true);
    expect(features.join(' ')).not.toMatch(/AUTH|STARTTLS|DSN|REQUIRETLS|XCLIENT|CHUNKING/);
    await client.quit();
  });

  it('250 2.1.5 for an enabled alias of a local domain, whatever the case of the address', async () => {
    const reply = await rcpt('Sales@POSTERN.test');
    expect(reply.raw).toBe('250 2.1.5 Accepted');
  });

  it("250 2.1.5 through the domain's catch-all", async () => {
    expect((await rcpt('anyone@catchall.test')).code).toBe(250);
  });

  it('550 5.1.1 when the live lookup found nothing — the code exactly once, right after 550', async () => {
    const reply = await rcpt('nobody@postern.test');
    expect(reply.code).toBe(550);
    expect(reply.enhanced).toBe('5.1.1');
    expect(reply.raw).toMatch(/^550 5\.1\.1 <nobody@postern\.test>: recipient address rejected/);
    expect(reply.raw.match(/5\.1\.1/g)).toHaveLength(1);
  });

  it('550 5.1.1 for a disabled alias, even on a domain with a catch-all', async () => {
    expect((await rcpt('paused@postern.test')).enhanced).toBe('5.1.1');
    expect((await rcpt('blocked@catchall.test')).enhanced).toBe('5.1.1');
  });

  it('554 5.7.1 for a domain that is not local (no open relay), disabled domains included', async () => {
    for (const to of ['someone@gmail.example', 'x@off.test', 'x@[127.0.0.1]', 'sales@postern.test.evil.example']) {
      const reply = await rcpt(to);
      expect(reply.raw).toMatch(/^554 5\.7\.1 .*relay access denied$/);
    }
  });

  it('normalises IDN domains: Unicode and punycode are the same address', async () => {
    expect((await rcpt('info@bücher.example', { mailParams: 'SMTPUTF8' })).code).toBe(250);
    expect((await rcpt('INFO@xn--bcher-kva.example')).code).toBe(250);
  });

  it('needs SMTPUTF8 declared for a non-ASCII local part, and then accepts it', async () => {
    expect((await rcpt('jösé@postern.test')).raw).toMatch(/^553 5\.6\.7 /);
    expect((await rcpt('JÖSÉ@postern.test', { mailParams: 'SMTPUTF8' })).code).toBe(250);
  });

  it('555 5.5.4 for a MAIL or RCPT parameter of an extension it does not offer; those it offers are taken', async () => {
    const client = await openSession(edge);
    expect((await client.command('MAIL FROM:<sender@outside.test> FOO=bar')).raw).toBe('555 5.5.4 Unsupported option: FOO');
    expect((await client.command('MAIL FROM:<sender@outside.test> RET=HDRS')).raw).toBe('555 5.5.4 Unsupported option: RET');
    expect((await client.command('MAIL FROM:<sender@outside.test> SIZE=100 BODY=8BITMIME SMTPUTF8')).code).toBe(250);
    expect((await client.command('RCPT TO:<sales@postern.test> NOTIFY=NEVER')).raw).toBe('555 5.5.4 Unsupported option: NOTIFY');
    expect((await client.command('RCPT TO:<sales@postern.test>')).code).toBe(250);
    await client.quit();
    expect(await metricsText(edge)).toMatch(/^mail_mta_rejections_total\{(?:[^}]*,)?stage="rcpt",reason="unsupported_parameter"(?:,[^}]*)?\} 1$/m);
  });

  it('452 4.5.3 past 100 recipients; the first 100 stand', async () => {
    const client = await openSession(edge);
    expect((await client.command('MAIL FROM:<bulk@outside.test>')).code).toBe(250);
    const replies = [];
    for (let i = 0; i < 101; i++) replies.push(await client.command(`RCPT TO:<user${i}@catchall.test>`));
    expect(replies.slice(0, 100).every((reply) => reply.raw === '250 2.1.5 Accepted')).toBe(true);
    expect(replies[100]?.raw).toMatch(/^452 4\.5\.3 Too many recipients/);
    // A repeat of an accepted address is not a new recipient.
    expect((await client.command('RCPT TO:<user5@catchall.test>')).code).toBe(250);
    const data = await client.command('DATA');
    expect(data.code).toBe(354);
    await client.write('Subject: bulk\r\n\r\nhi\r\n.\r\n');
    const final = await client.readReply();
    expect(final.raw).toMatch(/^250 2\.0\.0 queued as [0-9a-f-]{36}$/);
    const id = final.raw.split(' ').pop();
    const { rows } = await db.pool.query('SELECT cardinality(envelope_to) AS n FROM mail.messages WHERE id = $1', [id]);
    expect(rows[0].n).toBe(100);
    await client.quit();
  });

  it('counts RCPT outcomes by reply and lookup latency in /metrics', async () => {
    const text = await metricsText(edge);
    expect(text).toMatch(/mail_mta_rcpt_outcomes_total\{code="250",enhanced="2\.1\.5",reason="accepted",app="mta"\} \d+/);
    expect(text).toMatch(/mail_mta_rcpt_outcomes_total\{code="550",enhanced="5\.1\.1",reason="unknown_recipient",app="mta"\} \d+/);
    expect(text).toMatch(/mail_mta_rcpt_outcomes_total\{code="554",enhanced="5\.7\.1",reason="relay_denied",app="mta"\} \d+/);
    expect(text).toMatch(/mail_mta_rcpt_outcomes_total\{code="452",enhanced="4\.5\.3",reason="too_many_recipients",app="mta"\} 1/);
    expect(text).toMatch(/mail_mta_recipient_lookup_duration_ms_count\{[^}]*outcome="found"[^}]*\} [1-9]/);
    expect(text).toMatch(/mail_mta_messages_accepted_total\{app="mta"\} 1/);
  });
});
