import { describe, expect, it } from 'vitest';
import { addressLiteral, receivedHeader, rfc5322Date } from './received-header.ts';

const base = {
  helo: 'client.example',
  clientAddress: '192.0.2.7',
  edgeHostname: 'mx1.postern.test',
  esmtp: true,
  tls: false,
  smtpUtf8: false,
  messageId: 'abc123',
  recipients: ['one@postern.test'],
  date: new Date(Date.UTC(2026, 0, 5, 7, 8, 9)),
};

describe('Received: trace header', () => {
  it('follows RFC 5321 4.4 with the RFC 3848 keyword and names a single recipient', () => {
    expect(receivedHeader(base).toString()).toBe(
      'Received: from client.example ([192.0.2.7])\r\n' +
        '\tby mx1.postern.test (Postern) with ESMTP id abc123\r\n' +
        '\tfor <one@postern.test>;\r\n' +
        '\tMon, 5 Jan 2026 07:08:09 +0000\r\n',
    );
  });

  it('does not list recipients when there are several, and marks TLS and SMTPUTF8', () => {
    const text = receivedHeader({ ...base, recipients: ['a@x.test', 'b@x.test'], tls: true, smtpUtf8: true }).toString();
    expect(text).not.toContain('for <');
    expect(text).toContain('with UTF8SMTPS id abc123;\r\n');
  });

  it('cannot be broken by what the client sent as HELO', () => {
    const text = receivedHeader({ ...base, helo: 'evil\r\nX-Injected: yes (x)' }).toString();
    expect(text.split('\r\n')).toHaveLength(5);
    expect(text).not.toContain('X-Injected: yes');
  });

  it('writes address literals and dates as the RFCs do', () => {
    expect(addressLiteral('::ffff:127.0.0.1')).toBe('[127.0.0.1]');
    expect(addressLiteral('2001:db8::1')).toBe('[IPv6:2001:db8::1]');
    expect(rfc5322Date(new Date(Date.UTC(2026, 10, 21, 23, 59, 0)))).toBe('Sat, 21 Nov 2026 23:59:00 +0000');
  });
});
