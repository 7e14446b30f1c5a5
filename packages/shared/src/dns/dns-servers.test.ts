// MAIL_DNS_SERVERS as Node's resolver takes it: addresses only, ports optional.
import { describe, expect, it } from 'vitest';
import { parseDnsServers } from './dns-servers.ts';

describe('parseDnsServers (MAIL_DNS_SERVERS)', () => {
  it('takes IPv4 and IPv6 addresses with or without a port', () => {
    expect(parseDnsServers('192.0.2.53, 192.0.2.54:5353,2001:db8::53,[2001:db8::54]:53')).toEqual({
      ok: true,
      value: ['192.0.2.53', '192.0.2.54:5353', '2001:db8::53', '[2001:db8::54]:53'],
    });
  });

  it('refuses names, bad ports and an empty list', () => {
    expect(parseDnsServers('dns.example.test')).toMatchObject({ ok: false, problem: expect.stringContaining('not an IP address') });
    expect(parseDnsServers('192.0.2.53:70000')).toMatchObject({ ok: false, problem: expect.stringContaining('out of range') });
    expect(parseDnsServers('2001:db8::53:53:53:53:53:53')).toMatchObject({ ok: false });
    expect(parseDnsServers(' , ')).toMatchObject({ ok: false, problem: expect.stringContaining('names no DNS server') });
  });
});
