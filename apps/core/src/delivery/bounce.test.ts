import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLogger, loadTemplateCatalog } from '@postern/shared';
import { describe, expect, it } from 'vitest';
import { bounceFor, buildBounce, type FailedDelivery, headerBlock } from './bounce.ts';

const catalog = loadTemplateCatalog(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../templates'));
const original = Buffer.from('Received: from a by b\r\nSubject: Quarterly\r\n report\r\nFrom: a@outside.test\r\n\r\nbody text\r\n');

describe('buildBounce (RFC 3464)', () => {
  it('is a multipart/report with a delivery-status part and the original headers only', () => {
    const bounce = buildBounce({
      catalog,
      reportingMta: 'mx.postern.test',
      sender: 'postern@postern.test',
      originalSender: 'a@outside.test',
      recipient: 'gone@inbox.test',
      originalRaw: original,
      receivedAt: new Date('2025-01-01T00:00:00Z'),
      reason: 'bad_recipient: 550 5.1.1 no such user',
      attempts: 1,
      reply: { code: 550, enhanced: '5.1.1', text: 'no such user' },
      deadLettered: false,
      remoteMta: 'relay.test',
    });
    const text = bounce.raw.toString('utf8');
    expect(text).toMatch(/^From: Mail Delivery System <MAILER-DAEMON@postern\.test>\r\n/);
    expect(text).toContain('Content-Type: multipart/report; report-type=delivery-status;');
    expect(text).toContain('Reporting-MTA: dns; mx.postern.test\r\n');
    expect(text).toContain('Final-Recipient: rfc822; gone@inbox.test\r\nAction: failed\r\nStatus: 5.1.1\r\n');
    expect(text).toContain('Diagnostic-Code: smtp; 550 5.1.1 no such user');
    expect(text).toContain('Content-Type: text/rfc822-headers');
    expect(text).toContain('Subject: Quarterly\r\n report');
    expect(text).not.toContain('body text');
    expect(bounce.subject).toBe('Undelivered Mail Returned to Sender: Quarterly report');
  });

  it('reports a spent ladder without a reply as 4.4.7', () => {
    const bounce = buildBounce({
      catalog, reportingMta: 'mx', sender: 'p@x.test', originalSender: 'a@b.test', recipient: 'c@d.test', originalRaw: original,
      receivedAt: new Date(), reason: 'timeout', attempts: 13, reply: null, deadLettered: true, remoteMta: null,
    });
    expect(bounce.raw.toString()).toContain('Status: 4.4.7');
  });

  it('is 7-bit whatever the original carried: it is sent without BODY=8BITMIME, to relays that may not offer it (RFC 6152)', () => {
    const eightBit = Buffer.concat([
      Buffer.from('Received: from a by b\r\nSubject: Grüße aus Köln \r\nFrom: Jürgen <j@outside.test>\r\nX-Raw: '),
      Buffer.from([0xff, 0xfe, 0x80]),
      Buffer.from(` ${'ä'.repeat(700)}\r\n\r\nbody\r\n`),
    ]);
    const bounce = buildBounce({
      catalog, reportingMta: 'mx.postern.test', sender: 'postern@postern.test', originalSender: 'j@outside.test', recipient: 'jörg@inbox.test',
      originalRaw: eightBit, receivedAt: new Date('2025-01-01T00:00:00Z'), reason: 'bad_recipient: 550 5.1.1 Benutzer unbekannt — “gone”', attempts: 1,
      reply: { code: 550, enhanced: '5.1.1', text: 'Benutzer unbekannt — “gone”' }, deadLettered: false, remoteMta: 'relay.test',
    });
    const eighthBitSet = [...bounce.raw].filter((byte) => byte >= 0x80).length;
    expect(eighthBitSet).toBe(0);
    const lines = bounce.raw.toString('latin1').split('\r\n');
    expect(Math.max(...lines.map((line) => line.length))).toBeLessThanOrEqual(998);
    // The parts still say what the original said, once their transfer encoding is undone.
    const text = bounce.raw.toString('latin1');
    const parts = text.split(/^--postern-dsn-[^\r]*\r\n/m).slice(1);
    const decoded = (part: string) => {
      const [head, body] = [part.slice(0, part.indexOf('\r\n\r\n')), part.slice(part.indexOf('\r\n\r\n') + 4)];
      if (!/Content-Transfer-Encoding: quoted-printable/i.test(head)) return body;
      const bytes = body.replace(/=\r\n/g, '').replace(/=([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)));
      return Buffer.from(bytes, 'latin1').toString('utf8');
    };
    expect(bounce.subject).toBe('Undelivered Mail Returned to Sender: Grüße aus Köln');
    expect(decoded(parts[0]!)).toContain('Benutzer unbekannt — “gone”');
    expect(decoded(parts[2]!)).toContain('From: Jürgen <j@outside.test>');
    expect(decoded(parts[1]!)).toContain('Final-Recipient: utf-8; j\\x{F6}rg@inbox.test');
  });

  it('headerBlock stops at the first empty line', () => {
    expect(headerBlock(original)).toBe('Received: from a by b\r\nSubject: Quarterly\r\n report\r\nFrom: a@outside.test');
  });
});

describe('bounceFor: which failed deliveries are bounced', () => {
  const context = { catalog, reportingMta: 'mx.postern.test', sender: 'postern@postern.test', logger: createLogger('test', 'silent') };
  const accepted: FailedDelivery = {
    id: 'd1', messageId: 'm1', payloadMode: 'relay', category: null, envelopeFrom: 'Alice@Outside.test', recipient: 'gone@inbox.test',
    attempts: 13, raw: original, receivedAt: new Date('2025-01-01T00:00:00Z'), traceparent: null,
  };
  const failure = { deadLettered: true, reason: 'lease lost', reply: null, remoteMta: null };

  it('bounces accepted mail to its normalised envelope sender', () => {
    const bounce = bounceFor(context, accepted, failure);
    expect(bounce?.recipient).toBe('alice@outside.test');
    expect(bounce?.raw.toString()).toContain('Final-Recipient: rfc822; gone@inbox.test');
  });

  it('never bounces the null sender, a bounce, a command of an internal producer, or an unusable sender', () => {
    expect(bounceFor(context, { ...accepted, envelopeFrom: '' }, failure)).toBeNull();
    expect(bounceFor(context, { ...accepted, category: 'bounce' }, failure)).toBeNull();
    expect(bounceFor(context, { ...accepted, payloadMode: 'rendered' }, failure)).toBeNull();
    expect(bounceFor(context, { ...accepted, envelopeFrom: 'not an address' }, failure)).toBeNull();
  });

  it('a bounce that cannot be built is none rather than an error that would block recording the failure', () => {
    const empty = { ...catalog, templates: new Map() };
    expect(bounceFor({ ...context, catalog: empty }, accepted, failure)).toBeNull();
  });
});
