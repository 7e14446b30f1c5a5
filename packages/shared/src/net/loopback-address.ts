// Whether a connection comes from this host: an address of 127.0.0.0/8, ::1, or IPv4 loopback as an
// IPv4-mapped IPv6 address (a dual-stack listener's view of 127.0.0.1). Anything else, an unknown
// address included (a socket already closed), is not.
import { BlockList } from 'node:net';

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');
LOOPBACK.addSubnet('::ffff:127.0.0.0', 104, 'ipv6');

export function isLoopbackAddress(address: string | undefined): boolean {
  if (!address) return false;
  const family = address.includes(':') ? 'ipv6' : 'ipv4';
  try {
    return LOOPBACK.check(address.split('%')[0] as string, family);
  } catch {
    return false;
  }
}
