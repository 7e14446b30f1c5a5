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
});
