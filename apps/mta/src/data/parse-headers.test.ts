import { describe, expect, it } from 'vitest';
import { fromAddresses, parseHeaderFacts, wholeHeaderSection } from './parse-headers.ts';

describe('parseHeaderFacts', () => {
  it('makes header facts storable: a NUL or a control byte becomes a visible marker, never fails the insert', async () => {
    const raw = Buffer.from('Subject: a\u0000b\u0001c\r\nFrom: x@y.test\r\nMessage-ID: <m@y.test>\r\n\r\nbody\r\n', 'latin1');
    const facts = parseHeaderFacts(raw);
    expect(facts.subject).not.toContain('\u0000');
    expect(facts.subject).toContain('\u2400');
    expect(facts.subject).toMatch(/^a.b.c$/u);
    expect(facts.messageId).toBe('<m@y.test>');
  });

  it('reads the fields of the whole header section, past its first 256 KiB (MAIL_MTA_MAX_HEADER_SIZE may be larger)', async () => {
    const padding = `X-Pad: ${'p'.repeat(990)}\r\n`.repeat(300);
    const facts = parseHeaderFacts(Buffer.from(`${padding}From: late@outside.test\r\nSubject: late\r\n\r\nbody\r\n`));
    expect(facts).toEqual({ messageId: null, subject: 'late', from: 'late@outside.test' });
  });

  it('bounds a header fact at 998 characters with a marker saying how much was cut', async () => {
    const facts = parseHeaderFacts(Buffer.from(`Subject: ${'x'.repeat(5_000)}\r\n\r\n`, 'latin1'));
    expect(facts.subject?.length).toBe(998);
    expect(facts.subject).toMatch(/\[\+\d+ chars\]$/);
  });
});

describe('the From addresses a mail reader shows, from a message kept in chunks', () => {
  const message = Buffer.from(
    'Received: from x\r\nFrom: =?utf-8?q?ceo=40bank.test?=\r\nFrom: Bank <ceo@=?utf-8?q?bank.test?=>, team: a@one.test, b@two.test;\r\nSubject: s\r\n\r\nFrom: body@not.header\r\n',
  );

  it('joins the chunks up to the blank line, wherever the chunks are cut, and no further', () => {
    const section = message.subarray(0, message.indexOf('\r\n\r\n') + 2);
    for (let cut = 1; cut < message.length; cut++) {
      const chunks = [message.subarray(0, cut), message.subarray(cut)];
      expect(wholeHeaderSection(chunks).equals(section)).toBe(true);
    }
    const bytes = [...message].map((byte) => Buffer.from([byte]));
    expect(wholeHeaderSection(bytes).equals(section)).toBe(true);
    expect(wholeHeaderSection([Buffer.from('From: a@b.test\r\n')]).toString()).toBe('From: a@b.test\r\n');
  });

  it('finds no header section in a message that opens with the blank line, as the stored copy and mailauth read it', () => {
    // Everything after the opening CRLF is body: a "From:" there is text a reader shows in the
    // body, not an author whose domain DMARC would evaluate.
    const bodyOnly = Buffer.from('\r\nFrom: ceo@bank.test\r\nSubject: s\r\n\r\nmore body\r\n');
    for (let cut = 1; cut < bodyOnly.length; cut++) {
      const section = wholeHeaderSection([bodyOnly.subarray(0, cut), bodyOnly.subarray(cut)]);
      expect(section.length).toBe(0);
      expect(fromAddresses(section)).toEqual([]);
    }
    expect(wholeHeaderSection([Buffer.from('\r'), Buffer.from('\nFrom: a@b.test\r\n')]).length).toBe(0);
  });

  it('decodes encoded words and includes every From field and group member, never the body', () => {
    // The first From is a display name alone once decoded (a reader shows "ceo@bank.test" as a
    // name, with no address): no author, as DMARC sees it too.
    expect(fromAddresses(wholeHeaderSection([message]))).toEqual(['ceo@bank.test', 'a@one.test', 'b@two.test']);
    expect(fromAddresses(Buffer.from('Subject: none\r\n'))).toEqual([]);
  });
});
