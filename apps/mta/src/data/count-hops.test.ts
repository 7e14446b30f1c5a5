import { describe, expect, it } from 'vitest';
import { countReceivedHeaders } from './count-hops.ts';

const message = (headers: string[], body = 'Hello.\r\n') => Buffer.from(`${headers.join('\r\n')}\r\n\r\n${body}`, 'latin1');

describe('countReceivedHeaders', () => {
  it('counts Received: fields of the header section, any case, folded or not', () => {
    const headers = ['Received: from a by b;\r\n\tMon, 1 Jan 2024 00:00:00 +0000', 'RECEIVED : from c by d; x', 'received:x', 'Subject: Received: not a field'];
    expect(countReceivedHeaders(message(headers))).toBe(3);
  });

  it('ignores Received: lines in the body and X-Received fields', () => {
    expect(countReceivedHeaders(message(['X-Received: x', 'Subject: s'], 'Received: quoted\r\n'))).toBe(0);
  });

  // The collector (and mailsplit, mailauth, forged-auth-results.ts) reads a message that opens with
  // the blank line as one without a header: its body up to a later blank line is not a header.
  it('finds no hop in a message that opens with the blank line, whatever its body quotes', () => {
    const quoted = Array.from({ length: 51 }, (_, i) => `Received: from hop${i}.test by x; Sat, 28 Nov 2026 10:00:00 +0000`).join('\r\n');
    expect(countReceivedHeaders(Buffer.from(`\r\n${quoted}\r\n\r\nend\r\n`))).toBe(0);
    expect(countReceivedHeaders(Buffer.from(`\r\n${quoted}\r\n`))).toBe(0);
  });

  // MAIL_MTA_MAX_HEADER_SIZE may be set above 256 KiB; the collector refuses a header over it before
  // anything is counted, so the count reads all of what it let through: padding does not hide hops.
  it('counts Received: fields past the first 256 KiB of a header section', () => {
    const padding = Array.from({ length: 300 }, () => `X-Pad: ${'p'.repeat(990)}`);
    const hops = Array.from({ length: 51 }, (_, i) => `Received: from hop${i}.test by x; Sat, 28 Nov 2026 10:00:00 +0000`);
    expect(countReceivedHeaders(message([...padding, ...hops]))).toBe(51);
  });
});
