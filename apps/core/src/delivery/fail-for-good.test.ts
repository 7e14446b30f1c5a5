import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLogger, loadTemplateCatalog, MAX_REASON_CHARS, type ReclaimedDelivery } from '@postern/shared';
import { describe, expect, it } from 'vitest';
import type { FailedDelivery } from './bounce.ts';
import { afterLostLease, afterTemporaryFailure, failForGood, LEASE_LOST_REASON, lostLeaseEnding } from './fail-for-good.ts';
import { retryLadder } from './retry-ladder.ts';

const catalog = loadTemplateCatalog(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../templates'));
const context = { catalog, reportingMta: 'mx.postern.test', sender: 'postern@postern.test', logger: createLogger('test', 'silent') };
const poisonedRaw = Buffer.concat([
  Buffer.from('Subject: invoice \u0000 due'),
  Buffer.from([0xff, 0xfe, 0x0d, 0x0a]),
  Buffer.from(`X-Long: ${'a'.repeat(70_000)}\r\n\r\nbody\r\n`),
]);
const accepted: FailedDelivery = {
  id: 'd1', messageId: 'm1', payloadMode: 'relay', category: null, envelopeFrom: 'alice@outside.test', recipient: 'gone@inbox.test',
  attempts: 4, raw: poisonedRaw, receivedAt: new Date('2025-01-01T00:00:00Z'), traceparent: null,
};
const reply = { code: 550, enhanced: '5.1.1', text: 'no such user \u0000 here' };

describe('fail for good: the one decision behind the attempt worker and the lease reclaim', () => {
  const ladder = retryLadder([100, 200, 300]);

  it('a temporary failure retries while the ladder lasts, then ends as a dead letter', () => {
    expect(afterTemporaryFailure(ladder, 1)).toEqual({ action: 'retry', waitMs: 100 });
    expect(afterTemporaryFailure(ladder, 3)).toEqual({ action: 'retry', waitMs: 300 });
    expect(afterTemporaryFailure(ladder, 4)).toEqual({ action: 'end', status: 'dead_letter' });
  });

  it('a lost lease dead-letters at the same attempt count as the ladder does (the reclaim SQL gets ladder.maxAttempts)', () => {
    expect(afterLostLease(ladder, 3)).toBe('retry');
    expect(afterLostLease(ladder, ladder.maxAttempts)).toBe('dead_letter');
    for (let attempt = 1; attempt <= 6; attempt++) {
      expect(afterLostLease(ladder, attempt) === 'dead_letter').toBe(afterTemporaryFailure(ladder, attempt).action === 'end');
    }
  });

  it('a permanent refusal fails, a spent ladder or a lost lease dead-letters; each with its reason and a bounce', () => {
    const refused = failForGood(context, accepted, { kind: 'refused', reason: 'bad_recipient: 550 5.1.1 no such user', reply, remoteMta: 'relay.test' });
    expect(refused).toMatchObject({ status: 'failed', reason: 'bad_recipient: 550 5.1.1 no such user' });
    expect(refused.bounce?.recipient).toBe('alice@outside.test');
    const spent = failForGood(context, accepted, { kind: 'ladder_spent', reason: 'timeout: no answer', reply: null, remoteMta: null });
    expect(spent).toMatchObject({ status: 'dead_letter', reason: 'retry ladder exhausted after 4 attempts; last: timeout: no answer' });
    expect(spent.bounce?.raw.toString()).toContain('Status: 4.4.7');
    const lost = failForGood(context, accepted, { kind: 'lease_lost' });
    expect(lost).toMatchObject({ status: 'dead_letter', reason: LEASE_LOST_REASON });
    expect(lost.bounce).not.toBeNull();
  });

  it('builds the bounce from storable, bounded fields whatever the original headers and the reply held', () => {
    const ending = failForGood(context, accepted, { kind: 'refused', reason: `bad_recipient: ${'x\u0000'.repeat(2_000)}`, reply, remoteMta: null });
    expect(ending.reason.length).toBeLessThanOrEqual(MAX_REASON_CHARS);
    expect(ending.reason).not.toContain('\u0000');
    const bounce = ending.bounce;
    if (!bounce) throw new Error('expected a bounce');
    expect(bounce.subject).toBe('Undelivered Mail Returned to Sender: invoice \u2400 due\ufffd\ufffd');
    for (const text of [bounce.subject, bounce.fromHeader, bounce.messageIdHeader]) expect(text.isWellFormed() && !text.includes('\u0000')).toBe(true);
    const raw = bounce.raw.toString('utf8');
    expect(raw).not.toContain('\u0000');
    expect(bounce.raw.includes(0)).toBe(false);
    // RFC 5322 2.1.1: no line longer than 998 characters, the 70,000-character header cut with a marker.
    for (const line of raw.split('\r\n')) expect(line.length).toBeLessThanOrEqual(998);
    // The quoted headers go quoted-printable (the marker is not ASCII): soft line breaks undone.
    expect(raw.replace(/=\r\n/g, '')).toMatch(/X-Long: a+=E2=80=A6\[\+\d+ chars\]/);
    expect(bounce.raw.length).toBeLessThan(48 * 1024);
    // The bounce's own header block is ASCII: the quoted Subject goes in RFC 2047 encoded words.
    const ownHeaders = raw.slice(0, raw.indexOf('\r\n\r\n'));
    expect(ownHeaders).toMatch(/^Subject: Undelivered Mail Returned to Sender: invoice\r\n =\?UTF-8\?Q\?=E2=90=80/m);
    expect(/^[\x20-\x7e\r\n\t]*$/.test(ownHeaders)).toBe(true);
  });

  it('never bounces to the null sender, to a bounce, or for mail of internal producers', () => {
    for (const delivery of [{ ...accepted, envelopeFrom: '' }, { ...accepted, category: 'bounce' }, { ...accepted, payloadMode: 'template' as const }]) {
      expect(failForGood(context, delivery, { kind: 'lease_lost' }).bounce).toBeNull();
    }
  });

  it('a lease taken back from the reclaim ends as the lease_lost cause says, with or without its message', () => {
    const row: ReclaimedDelivery = {
      id: 'd1', status: 'dead_letter', attempt_count: 4, payload_mode: 'relay', message_id: 'm1', category: null,
      recipient: 'gone@inbox.test', envelope_from: 'alice@outside.test', created_at: new Date('2025-01-01T00:00:00Z'), traceparent: null,
    };
    const end = lostLeaseEnding(context);
    const withPayload = end(row, { raw: poisonedRaw, receivedAt: new Date('2025-01-01T00:00:00Z'), envelopeTo: ['list@alias.test'] });
    const direct = failForGood(context, accepted, { kind: 'lease_lost' });
    expect(withPayload).toMatchObject({ status: direct.status, reason: direct.reason });
    expect(withPayload.bounce?.subject).toBe(direct.bounce?.subject);
    expect(withPayload.bounce?.raw.toString()).toContain('invoice');
    // Retention purged the message: the bounce still goes out, without the original headers.
    const purged = end(row, null);
    expect(purged).toMatchObject({ status: 'dead_letter', reason: LEASE_LOST_REASON });
    expect(purged.bounce?.recipient).toBe('alice@outside.test');
    expect(end({ ...row, envelope_from: '' }, null).bounce).toBeNull();
  });
});
