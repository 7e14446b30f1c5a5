// MAIL_DNS_SERVERS: the DNS servers the mail resolver asks, "ip[:port]" comma-separated ("[ipv6]:port"
// with a port). Only addresses: a server given by name would need a resolver to find the resolver.
import net from 'node:net';
import type { Parsed } from '../config/parse-values.ts';

const WITH_PORT_V6 = /^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$/;
const WITH_PORT_V4 = /^([0-9.]+):(\d{1,5})$/;

function parseServer(text: string): Parsed<string> {
  const bracketed = WITH_PORT_V6.exec(text);
  const withPort = bracketed ?? WITH_PORT_V4.exec(text);
  const host = withPort ? (withPort[1] as string) : text;
  const family = net.isIP(host);
  if (family === 0) {
    return { ok: false, problem: `"${text}" is not an IP address with an optional port (e.g. 192.0.2.53, 192.0.2.53:5353, [2001:db8::53]:53)` };
  }
  if (!withPort) return { ok: true, value: host };
  const port = Number(withPort[2]);
  if (port < 1 || port > 65535) return { ok: false, problem: `port ${port} of "${text}" is out of range (1-65535)` };
  // The forms Node's resolver takes in setServers().
  return { ok: true, value: family === 6 ? `[${host}]:${port}` : `${host}:${port}` };
}

export function parseDnsServers(text: string): Parsed<string[]> {
  const servers: string[] = [];
  for (const part of text.split(',')) {
    const trimmed = part.trim();
    if (trimmed === '') continue;
    const parsed = parseServer(trimmed);
    if (!parsed.ok) return parsed;
    servers.push(parsed.value);
  }
  if (servers.length === 0) return { ok: false, problem: `"${text}" names no DNS server` };
  return { ok: true, value: servers };
}
