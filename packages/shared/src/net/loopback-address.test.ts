import { describe, expect, it } from 'vitest';
import { isLoopbackAddress } from './loopback-address.ts';

describe('isLoopbackAddress', () => {
  it('takes 127.0.0.0/8, ::1 and IPv4 loopback mapped into IPv6', () => {
    for (const address of ['127.0.0.1', '127.8.9.10', '::1', '::ffff:127.0.0.1', '0:0:0:0:0:0:0:1']) {
      expect(isLoopbackAddress(address), address).toBe(true);
    }
  });

  it('refuses every other address, a malformed one and none at all', () => {
    for (const address of ['10.0.0.5', '172.17.0.1', '192.168.1.1', '128.0.0.1', '::ffff:10.0.0.5', 'fe80::1%eth0', '2001:db8::1', '::', 'localhost', '', undefined]) {
      expect(isLoopbackAddress(address), String(address)).toBe(false);
    }
  });
});
