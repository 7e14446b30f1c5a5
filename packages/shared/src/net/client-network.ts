// The key a client is counted under (the edge's rate limit, connections and lookups; the turns of
// the API's token lookups): its IPv4 address, or the /64 of its IPv6 address. An IPv6 end site is
// normally given at least a /64 (RFC 6177), so one sender can rotate through 2^64 addresses; keyed
// per address, each rotation was a fresh bucket.
import net from 'node:net';

/** The 8 hextets of an IPv6 address (an embedded IPv4 tail converted), or null. */
function hextets(address: string): number[] | null {
  let text = address.split('%')[0] ?? '';
  const v4tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4tail?.[1]) {
    const octets = v4tail[1].split('.').map(Number);
    const [a = 0, b = 0, c = 0, d = 0] = octets;
    text = `${text.slice(0, -v4tail[1].length)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const parse = (part: string | undefined) => (part ? part.split(':').map((group) => Number.parseInt(group, 16)) : []);
  const head = parse(halves[0]);
  const tail = parse(halves[1]);
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 0) return null;
  const all = [...head, ...new Array<number>(Math.max(0, missing)).fill(0), ...tail];
  return all.every((group) => Number.isInteger(group) && group >= 0 && group <= 0xffff) ? all : null;
}

export function clientNetworkKey(address: string): string {
  if (!net.isIPv6(address)) return address;
  const groups = hextets(address);
  if (!groups) return address;
  // IPv4-mapped (::ffff:a.b.c.d): the IPv4 client it is.
  if (groups.slice(0, 5).every((group) => group === 0) && groups[5] === 0xffff) {
    const [hi = 0, lo = 0] = groups.slice(6);
    return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  }
  return `${groups
    .slice(0, 4)
    .map((group) => group.toString(16))
    .join(':')}::/64`;
}
