// What the inbound authentication tests share: a DNS zone answered by a scripted query through the
// real mail resolver (its cache and error codes), DKIM keys published in it, messages signed and
// ARC-sealed with mailauth as a sender and a forwarder would.
import { createMailResolver, type DnsQuery, dkimDnsRecord, generateDkimKeyPair, type MailResolver } from '@postern/shared';
import { authenticate, dkimSign } from 'mailauth';

/** A record set, or how the name fails: SERVFAIL (an error that is no answer) or HANG (no reply at all). */
export type ZoneEntry = string[] | { A: string[] } | 'SERVFAIL' | 'HANG';

/** TXT records by name (each string one record); `A <name>` keys for addresses. */
export type Zone = Record<string, ZoneEntry>;

function dnsError(code: string, name: string): Error {
  return Object.assign(new Error(`${code} ${name}`), { code });
}

export function zoneResolver(zone: Zone): { resolver: MailResolver; asked: string[] } {
  const asked: string[] = [];
  const query: DnsQuery = (name, type) => {
    asked.push(`${type} ${name}`);
    const entry = zone[type === 'TXT' ? name : `${type} ${name}`];
    if (entry === 'HANG') return new Promise(() => {});
    if (entry === 'SERVFAIL') return Promise.reject(dnsError('ESERVFAIL', name));
    if (entry === undefined) return Promise.reject(dnsError('ENOTFOUND', name));
    const records = Array.isArray(entry) ? entry.map((text) => [text]) : entry.A;
    return Promise.resolve({ records, ttlSeconds: null } as Awaited<ReturnType<DnsQuery>>);
  };
  return { resolver: createMailResolver({ servers: ['127.0.0.1:53'], timeoutMs: 1_000, query }), asked };
}

export interface TestKey {
  domain: string;
  selector: string;
  privateKey: string;
  /** The TXT record's name and value. */
  record: { name: string; value: string };
}

export async function testKey(domain: string, selector = 's1'): Promise<TestKey> {
  const pair = await generateDkimKeyPair('rsa2048');
  const record = dkimDnsRecord({ domain, selector, keyType: 'rsa2048', publicKey: pair.publicKey });
  return { domain, selector, privateKey: pair.privateKeyPem, record: { name: record.name, value: record.value } };
}

export function plainMessage(from: string, body = 'Hello there.\r\n'): Buffer {
  return Buffer.from(
    [`From: ${from}`, 'To: desk@postern.test', 'Subject: inbound auth', 'Message-ID: <m1@sender.test>', 'Date: Fri, 27 Nov 2026 08:00:00 +0000', '', body].join('\r\n'),
  );
}

export async function signed(message: Buffer, key: TestKey): Promise<Buffer> {
  const signature = { signingDomain: key.domain, selector: key.selector, privateKey: key.privateKey, algorithm: 'rsa-sha256' };
  const result = await dkimSign(message, { ...signature, canonicalization: 'relaxed/relaxed', signatureData: [signature] } as never);
  if (result.errors.length > 0) throw new Error(`signing failed: ${JSON.stringify(result.errors)}`);
  return Buffer.concat([Buffer.from(result.signatures), message]);
}

/** The message as a forwarder passes it on: authenticated there (with `zone`), ARC-sealed with `key`. */
export async function arcSealed(message: Buffer, key: TestKey, resolver: MailResolver, forwarder: { ip: string; helo: string; sender: string }): Promise<Buffer> {
  const result = await authenticate(message, {
    ...forwarder,
    mta: `mx.${key.domain}`,
    resolver: ((name: string, type: string) => resolver.resolve(name, type as never)) as never,
    disableBimi: true,
    seal: { signingDomain: key.domain, selector: key.selector, privateKey: key.privateKey },
  });
  if (!/ARC-Seal:/i.test(result.headers)) throw new Error(`not sealed: ${result.headers}`);
  return Buffer.concat([Buffer.from(result.headers), message]);
}

/** Cuts a message into chunks as the collector keeps them. */
export function chunked(message: Buffer, size = 7): Buffer[] {
  const chunks: Buffer[] = [];
  for (let at = 0; at < message.length; at += size) chunks.push(message.subarray(at, at + size));
  return chunks;
}
