import { describe, expect, it } from 'vitest';
import { clientNetworkKey } from './client-network.ts';

describe('clientNetworkKey', () => {
  it('keys IPv4 by address and IPv4-mapped IPv6 as the IPv4 it is', () => {
    expect(clientNetworkKey('192.0.2.7')).toBe('192.0.2.7');
    expect(clientNetworkKey('::ffff:192.0.2.7')).toBe('192.0.2.7');
  });

  it('keys IPv6 by its /64, whatever the interface identifier and spelling', () => {
    const key = clientNetworkKey('2001:db8:1:2::1');
    expect(key).toBe('2001:db8:1:2::/64');
    expect(clientNetworkKey('2001:0db8:0001:0002:ffff:eeee:dddd:cccc')).toBe(key);
    expect(clientNetworkKey('2001:db8:1:2:a:b:c:d%eth0')).toBe(key);
    expect(clientNetworkKey('2001:db8:1:3::1')).not.toBe(key);
    expect(clientNetworkKey('::1')).toBe('0:0:0:0::/64');
    expect(clientNetworkKey('2001:db8::1.2.3.4')).toBe('2001:db8:0:0::/64');
  });
});
