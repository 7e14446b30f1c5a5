// Inbound authentication against hostile senders: messages built to cost the edge, or to slip a
// spoof past MAIL_INBOUND_AUTH_POLICY=enforce, sent over SMTP to edges whose DNS is a scripted
// server (e2e/harness/scripted-dns.ts: one name SERVFAILs while the others answer, every question
// counted). Proves: at most 20 DKIM signatures are verified, the rest recorded as such, never
// dropped from the header without a word and never looked up; a 12 MB message with 60 signatures
// of different l= leaves the other sessions answered (it held the event loop for seconds); a second
// From field or a second mailbox in another domain no longer takes a p=reject spoof past enforce;
// header blocks of many short lines (folded under one Received, words of one Received, lines that
// are no field, an h= of many names over many fields) leave the other sessions answered (mailauth
// read each in quadratic time: 1 MB of them held the event loop for minutes).
import { createAlias, createDomain } from '@postern/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { plainMessage, signed, type TestKey, testKey } from '../../apps/mta/src/auth/auth.testkit.ts';
import type { Edge } from '../../apps/mta/src/edge.ts';
import { createTestDatabase, type TestDatabase } from '../harness/index.ts';
import { type ScriptedDns, startScriptedDns } from '../harness/scripted-dns.ts';
import { openSession, QUEUED, sendToDesk, startTestEdge } from './helpers/edge.ts';
import { calmestOf, slowestAnswerDuring, stallBound } from './helpers/stall-watch.ts';

let db: TestDatabase;
let dns: ScriptedDns;
let key: TestKey;
let annotate: Edge;
let enforce: Edge;

beforeAll(async () => {
  db = await createTestDatabase('mta-inbound-auth-hostile');
  await createDomain(db.pool, 'postern.test');
  await createAlias(db.pool, { domain: 'postern.test', localPart: 'desk', kind: 'forward', targets: ['desk@inbox.test'] });
  key = await testKey('bank.test');
  const keyRecord = key.record.value.match(/.{1,250}/g) ?? [];
  dns = await startScriptedDns((name, type) => {
    if (type !== 'TXT') return undefined;
    // Nobody may send as bank.test: SPF lists no client, DMARC says reject.
    if (name === 'bank.test') return { txt: [['v=spf1 -all']] };
    if (name === '_dmarc.bank.test') return { txt: [['v=DMARC1; p=reject']] };
    if (name === 'broken._domainkey.bank.test') return { rcode: 'SERVFAIL' };
    if (name.endsWith('._domainkey.bank.test')) return { txt: [keyRecord] };
    return undefined;
  });
  // The header blocks below go past the default MAIL_MTA_MAX_HEADER_SIZE (256 KiB) on purpose: what
  // they prove is that mailauth reads a header block in linear time, whatever the edge's cap.
  // No test here is about the verification deadline: 30 s, not the default 10 s, because 20
  // signatures over a 12 MB body are 240 MB to hash, and at a load of 35-55 that outlasted 10 s
  // (every verdict temperror, incomplete: 'deadline'). A verifier that held the event loop still
  // fails the stall checks.
  const env = { MAIL_DNS_SERVERS: dns.server, MAIL_INBOUND_AUTH_TIMEOUT: '30s', MAIL_MTA_MAX_HEADER_SIZE: '1MiB' };
  annotate = await startTestEdge(db.dsn, env);
  enforce = await startTestEdge(db.dsn, { ...env, MAIL_INBOUND_AUTH_POLICY: 'enforce' });
});

afterAll(async () => {
  await annotate?.stop();
  await enforce?.stop();
  await dns?.close();
  await db?.drop();
});

function send(edge: Edge, message: Buffer, from = 'someone@outside.test'): Promise<string> {
  return sendToDesk(edge, message, { from, helo: 'mail.outside.test' });
}

async function stored(reply: string) {
  const id = QUEUED.exec(reply)?.[1];
  if (!id) throw new Error(`not accepted: ${reply}`);
  const { rows } = await db.pool.query('SELECT auth_results, auth_verdicts FROM mail.messages WHERE id = $1', [id]);
  return rows[0] as { auth_results: string; auth_verdicts: Record<string, unknown> };
}

async function messageCount(): Promise<number> {
  return (await db.pool.query('SELECT count(*)::int AS n FROM mail.messages')).rows[0].n;
}

/** The signature header fields of `signedMessage`, without the message they were made over. */
function signatureFields(signedMessage: Buffer, message: Buffer): Buffer {
  return signedMessage.subarray(0, signedMessage.length - message.length);
}

async function signedMany(message: Buffer, count: number, extra: (index: number) => Record<string, unknown>): Promise<Buffer> {
  const { dkimSign } = await import('mailauth');
  const signatureData = Array.from({ length: count }, (_, index) => ({
    signingDomain: key.domain,
    selector: `s${index}`,
    privateKey: key.privateKey,
    algorithm: 'rsa-sha256',
    ...extra(index),
  }));
  const result = await dkimSign(message, { canonicalization: 'relaxed/relaxed', signatureData } as never);
  if (result.errors.length > 0) throw new Error(`signing failed: ${JSON.stringify(result.errors)}`);
  return Buffer.concat([Buffer.from(result.signatures), message]);
}

describe('inbound authentication against hostile senders', () => {
  it('21 DKIM signatures: the 21st is neither looked up nor dropped from the record, it is dkim=policy (not verified)', async () => {
    const message = plainMessage('Bank <ceo@bank.test>');
    // 20 signatures whose body hash does not match, then one whose key lookup would SERVFAIL.
    const twenty = signatureFields(await signedMany(message, 20, () => ({ selector: 's1' })), message)
      .toString('latin1')
      .replace(/bh=[A-Za-z0-9+/]/g, (tag) => (tag === 'bh=A' ? 'bh=B' : 'bh=A'));
    const last = signatureFields(await signed(message, { ...key, selector: 'broken' }), message);
    const hostile = Buffer.concat([Buffer.from(twenty, 'latin1'), last, message]);

    const row = await stored(await send(annotate, hostile));
    const entries = row.auth_results.split(';\r\n\t');
    expect(entries.filter((entry) => entry.startsWith('dkim=fail (body hash did not verify)'))).toHaveLength(20);
    expect(entries).toContain('dkim=policy (1 more signatures not verified: at most 20 are)');
    expect(row.auth_verdicts).toMatchObject({ dkimNotVerified: 1, dmarc: 'fail', dmarcPolicy: 'reject' });
    expect(dns.questions).not.toContain('TXT broken._domainkey.bank.test');
  });

  it('60 signatures of different l= over a 12 MB body: another session never waits more than a second (or ten times what an ordinary message costs it), and at most 20 keys are looked up', async () => {
    const lookupsBefore = dns.questions.filter((question) => question.includes('._domainkey.')).length;
    const body = `${'x'.repeat(998)}\r\n`.repeat(12_000);
    const message = plainMessage('Bank <ceo@bank.test>', body);
    const hostile = await signedMany(message, 60, (index) => ({ maxBodyLength: body.length - 100 - index }));

    const watcher = await openSession(annotate, 'watcher.outside.test');
    // The reference: the same message with one signature, in the same run.
    const ordinary = await slowestAnswerDuring(watcher, async () => send(annotate, await signedMany(message, 1, () => ({}))));
    const { result: reply, slowest } = await slowestAnswerDuring(watcher, () => send(annotate, hostile));
    await watcher.quit();

    expect(ordinary.result).toMatch(QUEUED);
    expect(slowest).toBeLessThan(stallBound(ordinary.slowest));
    const row = await stored(reply);
    expect(row.auth_verdicts).toMatchObject({ dkimNotVerified: 40 });
    expect((row.auth_verdicts.dkim as unknown[]).length).toBe(20);
    const lookups = dns.questions.filter((question) => question.includes('._domainkey.')).length - lookupsBefore;
    expect(lookups).toBeLessThanOrEqual(20);
  }, 120_000);

  it('header blocks of 65536 short lines or names: each accepted, another session never waits more than a second (or ten times what an ordinary message costs it)', async () => {
    const lines = 65_536;
    const names = Array.from({ length: lines / 2 }, (_, index) => `x${index}`).join(':');
    const shapes = {
      'lines folded under one Received': `Received: from a\r\n${' y\r\n'.repeat(lines)}`,
      'words of one Received': `Received: from a ${'y '.repeat(lines)}by b; Sat, 28 Nov 2026 10:00:00 +0000\r\n`,
      'comments after the from of one Received': `Received: from a ${'(c) '.repeat(lines)}by b; Sat, 28 Nov 2026 10:00:00 +0000\r\n`,
      'lines that are no field': 'x\r\n'.repeat(lines),
      'an h= of 32768 names over 65536 fields': `${'x: y\r\n'.repeat(lines)}DKIM-Signature: v=1; a=rsa-sha256; d=bank.test; s=s1; c=relaxed/relaxed; h=${names}; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAA\r\n`,
    };
    const watcher = await openSession(annotate, 'watcher.outside.test');
    try {
      // The reference: an ordinary message of about the same size (its bytes in a body), in the same run.
      const ordinary = await slowestAnswerDuring(watcher, () => send(annotate, plainMessage('someone@outside.test', `${'y'.repeat(78)}\r\n`.repeat(Math.floor((lines * 6) / 80)))));
      expect(ordinary.result).toMatch(QUEUED);
      for (const [shape, header] of Object.entries(shapes)) {
        const { result: reply, slowest } = await calmestOf(watcher, ordinary.slowest, () =>
          send(annotate, Buffer.concat([Buffer.from(header), plainMessage('someone@outside.test')])).catch((error: Error) => error.message),
        );
        expect({ shape, reply, slowAnswer: slowest >= stallBound(ordinary.slowest) }).toMatchObject({ shape, reply: expect.stringMatching(QUEUED), slowAnswer: false });
      }
    } finally {
      await watcher.quit();
    }
  }, 120_000);

  it('a spoof of a p=reject domain with a second From field, or a second mailbox in another domain, is refused 550 5.7.1 under enforce', async () => {
    const twoFields = Buffer.from('From: ceo@bank.test\r\nFrom: someone@outside.test\r\nTo: desk@postern.test\r\nSubject: wire\r\n\r\nPay.\r\n');
    const twoMailboxes = Buffer.from('From: ceo@bank.test, someone@outside.test\r\nTo: desk@postern.test\r\nSubject: wire\r\n\r\nPay.\r\n');
    const before = await messageCount();
    for (const message of [twoFields, twoMailboxes]) {
      expect(await send(enforce, message)).toMatch(/^550 5\.7\.1 Message refused: it fails the DMARC policy \(p=reject\) of bank\.test/);
    }
    expect(await messageCount()).toBe(before);

    const row = await stored(await send(annotate, twoFields));
    expect(row.auth_verdicts).toMatchObject({ dmarc: 'fail', dmarcPolicy: 'reject', dmarcDomain: 'bank.test' });
    expect(row.auth_results).toContain('dmarc=fail (multiple-from-fields: each author domain evaluated)');
    expect(row.auth_results).toContain('dmarc=none (multiple-from-fields: each author domain evaluated) header.from=outside.test');
  });

  it('a spoof of a p=reject domain written in encoded words (as every mail reader decodes them) is refused 550 5.7.1 under enforce', async () => {
    const spoofs = ['From: Bank <ceo@=?utf-8?q?bank.test?=>', 'From: Bank <ceo@=?UTF-8?B?YmFuay50ZXN0?=>'].map((from) => Buffer.from(`${from}\r\nTo: desk@postern.test\r\nSubject: wire\r\n\r\nPay.\r\n`));
    const before = await messageCount();
    for (const message of spoofs) {
      expect(await send(enforce, message)).toMatch(/^550 5\.7\.1 Message refused: it fails the DMARC policy \(p=reject\) of bank\.test/);
    }
    expect(await messageCount()).toBe(before);

    const row = await stored(await send(annotate, spoofs[0] as Buffer));
    expect(row.auth_verdicts).toMatchObject({ dmarc: 'fail', dmarcPolicy: 'reject', dmarcDomain: 'bank.test' });
    expect(row.auth_results).toContain('dmarc=fail (encoded words in the From address: each author domain evaluated)');
    // A real mailbox of the domain written plainly is judged by mailauth alone, as before.
    const plain = await stored(await send(annotate, Buffer.from('From: ceo@outside.test\r\nTo: desk@postern.test\r\nSubject: hi\r\n\r\nHello.\r\n')));
    expect(plain.auth_results).not.toContain('each author domain evaluated');
  });
});
