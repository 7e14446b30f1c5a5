// Forwarding through an alias, end to end: mail from someone@sender.test sent through the edge to an
// alias of A (alias.srs.test) that forwards to an external address arrives at the sink with an SRS0
// envelope sender in A, which passes the receiver's SPF check (mailauth, asking a real DNS server,
// dnsmasq, that serves A's SPF record naming the engine's address) and carries an ARC set that
// mailauth verifies against A's DKIM record from the same server. A bounce sent back through the
// edge to that SRS address reaches the original sender with the null sender kept; a forged hash, an
// expired timestamp and the real hash with the separator between domain and local part moved are
// refused 550 5.1.1 at RCPT; after a change of secret the old one, given as
// MAIL_SRS_SECRET_PREVIOUS, is still accepted, and without it refused. A sender whose SRS address
// could not come back is forwarded as it is.
import { randomBytes } from 'node:crypto';
import { Resolver } from 'node:dns/promises';
import { createAlias, createDkimKey, createDomain, createSrs, dkimDnsRecord, parseSecretsKey, type SecretsKey, secretsKeyOf } from '@postern/shared';
import { authenticate, spf } from 'mailauth';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import type { Edge } from '../../apps/mta/src/edge.ts';
import { startTestEngine } from '../core/helpers/engine.ts';
import { type ScriptedSmtp, startScriptedSmtp } from '../core/helpers/smtp-servers.ts';
import { type DnsServer, startDnsmasq } from '../harness/dnsmasq.ts';
import { createTestDatabase, type TestDatabase, waitFor } from '../harness/index.ts';
import { openSession, startTestEdge } from './helpers/edge.ts';
import { sendMail } from './helpers/smtp-client.ts';

const A = 'alias.srs.test';
const ALIAS = `list@${A}`;
const TARGET = 'reader@external.test';
const ORIGINAL = 'someone@sender.test';
const SRS_SECRET = randomBytes(24).toString('base64');
const SECRETS_KEY = randomBytes(32).toString('base64');
const HOSTNAME = `mx.${A}`;
const DAY_MS = 86_400_000;

let db: TestDatabase;
let dns: DnsServer;
let sink: ScriptedSmtp;
let engine: Engine;
let edge: Edge;
let resolver: (name: string, type: string) => Promise<string[] | string[][]>;

function parsedKey(text: string): SecretsKey {
  const parsed = parseSecretsKey(text);
  if (!parsed.ok) throw new Error(parsed.problem);
  return secretsKeyOf(parsed.value);
}

async function arrivedFor(to: string) {
  return waitFor(
    `a message for ${to} at the sink`,
    () => sink.messages.find((message) => message.to.includes(to)),
    (found) => found !== undefined,
    { timeoutMs: 60_000 },
  ).then((found) => found!);
}

beforeAll(async () => {
  db = await createTestDatabase('mta-srs-arc');
  sink = await startScriptedSmtp();
  const key = await createDkimKey(db.pool, parsedKey(SECRETS_KEY), { domain: A, selector: 'fwd1', keyType: 'ed25519' });
  const record = dkimDnsRecord({ domain: A, selector: key.selector, keyType: key.keyType, publicKey: key.publicKey });
  dns = await startDnsmasq({
    txt: [
      // The engine sends from the loopback: A's SPF names it.
      [A, 'v=spf1 ip4:127.0.0.0/8 -all'],
      [record.name, record.value],
    ],
  });
  const dnsResolver = new Resolver({ timeout: 2_000, tries: 2 });
  dnsResolver.setServers([dns.server]);
  resolver = (name, type) => dnsResolver.resolve(name, type) as Promise<string[] | string[][]>;
  await createDomain(db.pool, A);
  await createAlias(db.pool, { domain: A, localPart: 'list', kind: 'forward', targets: [TARGET] });
  const shared = { MAIL_SRS_SECRET: SRS_SECRET, MAIL_MTA_HOSTNAME: HOSTNAME };
  // Generous limits: the machine running the suites may be loaded, and no timing is under test here.
  engine = await startTestEngine(db.dsn, {
    ...shared,
    MAIL_SMTP_ADDR: `127.0.0.1:${sink.port}`,
    MAIL_SECRETS_KEY: SECRETS_KEY,
    MAIL_DNS_SERVERS: dns.server,
    MAIL_SMTP_TIMEOUT: '15s',
    MAIL_SMTP_SEND_DEADLINE: '30s',
    MAIL_LEASE_DURATION: '60s',
    MAIL_WATCHDOG_STALL_THRESHOLD: '60s',
    MAIL_RETRY_LADDER: Array.from({ length: 20 }, () => '1s').join(','),
  });
  edge = await startTestEdge(db.dsn, { ...shared, MAIL_MTA_LOOKUP_TIMEOUT: '15s' });
});

afterAll(async () => {
  await edge?.stop();
  await engine?.stop();
  await sink?.close();
  await dns?.close();
  await db?.drop();
});

describe('forwarded mail: SRS envelope sender and ARC set, bounces routed back', () => {
  let srsSender = '';

  it('arrives with an SRS0 sender in the alias domain that passes SPF, and an ARC set that verifies', async () => {
    const client = await openSession(edge, 'mail.sender.test');
    const message = `From: Someone <${ORIGINAL}>\r\nTo: ${ALIAS}\r\nSubject: forwarded\r\nMessage-ID: <fwd-1@sender.test>\r\n\r\nHello through the alias.\r\n`;
    const sent = await sendMail(client, { from: ORIGINAL, to: [ALIAS], message });
    await client.quit();
    expect(sent.final?.code).toBe(250);

    const arrived = await arrivedFor(TARGET);
    srsSender = arrived.from;
    expect(srsSender).toMatch(/^SRS0=[A-Za-z0-9+/]{8}=[A-Z2-7]{2}=sender\.test=someone@alias\.srs\.test$/);

    const checked = await spf({ sender: srsSender, ip: '127.0.0.1', helo: HOSTNAME, mta: 'receiver.test', resolver });
    expect(checked.status.result).toBe('pass');

    const text = arrived.raw.toString('utf8');
    expect(text).toMatch(/^ARC-Seal: i=1; a=ed25519-sha256; t=\d+; cv=none; d=alias\.srs\.test;\s+s=fwd1;/);
    // What the edge found when the message arrived (its Authentication-Results, the stored message's
    // first header) is what the set vouches for.
    expect(text).toContain(`ARC-Authentication-Results: i=1; ${HOSTNAME}; dkim=none (message not signed); spf=none`);
    const verified = await authenticate(arrived.raw, { ip: '127.0.0.1', helo: HOSTNAME, sender: srsSender, mta: 'receiver.test', resolver, disableBimi: true });
    expect(verified.arc).toMatchObject({ status: { result: 'pass' } });
    expect(verified.spf).toMatchObject({ status: { result: 'pass' } });
  });

  it('a bounce to the SRS address through the edge reaches the original sender, from <>', async () => {
    expect(srsSender).not.toBe('');
    const client = await openSession(edge, 'mx.external.test');
    const bounce = `From: MAILER-DAEMON@external.test\r\nTo: ${srsSender}\r\nSubject: Undelivered Mail Returned to Sender\r\n\r\nThe reader's mailbox is full.\r\n`;
    const sent = await sendMail(client, { from: '', to: [srsSender], message: bounce });
    await client.quit();
    expect(sent.rcpts[0]?.code).toBe(250);
    expect(sent.final?.code).toBe(250);
    const arrived = await arrivedFor(ORIGINAL);
    expect(arrived.from).toBe('');
    expect(arrived.raw.toString('utf8')).toContain("The reader's mailbox is full.");
  });

  // Folded, an address literal put '[' in the local part and a long sender passed 254 octets: the
  // receiver refused the long one (501, so the forwarded mail failed and bounced), and a bounce to
  // either was refused by our own edge (501 5.1.3).
  it('a sender whose SRS address could not come back (an address literal, a long address) is forwarded as it is', async () => {
    const senders = ['someone@[192.0.2.1]', `${'l'.repeat(64)}@${'d'.repeat(60)}.${'e'.repeat(60)}.${'f'.repeat(50)}.test`];
    for (const [index, from] of senders.entries()) {
      const client = await openSession(edge, 'mail.sender.test');
      const message = `From: ${ORIGINAL}\r\nTo: ${ALIAS}\r\nSubject: unfoldable ${index}\r\n\r\nHello.\r\n`;
      const sent = await sendMail(client, { from, to: [ALIAS], message });
      await client.quit();
      expect(sent.final?.code).toBe(250);
    }
    for (const [index, from] of senders.entries()) {
      const arrived = await waitFor(
        `the message from sender ${index} at the sink`,
        () => sink.messages.find((message) => message.raw.toString('utf8').includes(`Subject: unfoldable ${index}\r\n`)),
        (found) => found !== undefined,
        { timeoutMs: 60_000 },
      );
      expect(arrived!.from).toBe(from);
    }
  });

  it('a forged hash, an expired timestamp and a moved separator are refused 550 5.1.1 at RCPT', async () => {
    const srs = createSrs(SRS_SECRET);
    const good = srs.rewrite(ORIGINAL, A);
    // The hash is compared without regard to case: the forged first character differs from the
    // real one after case folding too (a 'q' made 'Q' would be the same hash).
    const forged = good.replace(/^SRS0=(.)/, (_, c: string) => `SRS0=${c.toLowerCase() === 'q' ? 'R' : 'Q'}`);
    const expired = srs.rewrite(ORIGINAL, A, new Date(Date.now() - 30 * DAY_MS));
    // The real hash with the '=' between domain and local part moved: once the same hash, so the
    // bounce address of someone@sender.test also relayed to tsomeone@sender.tes and
    // omeone@sender.tests.
    const [, hash, timestamp] = /^SRS0=([^=]+)=([^=]+)=/.exec(good)!;
    const shifted = [`SRS0=${hash}=${timestamp}=sender.tes=tsomeone@${A}`, `SRS0=${hash}=${timestamp}=sender.tests=omeone@${A}`];
    const client = await openSession(edge, 'mx.external.test');
    expect((await client.command('MAIL FROM:<>')).code).toBe(250);
    for (const address of [forged, expired, ...shifted]) {
      const reply = await client.command(`RCPT TO:<${address}>`);
      expect(reply.raw).toMatch(/^550 5\.1\.1 /);
    }
    expect((await client.command(`RCPT TO:<${good}>`)).code).toBe(250);
    await client.quit();
  });

  it('after a change of secret, an edge given the old one as MAIL_SRS_SECRET_PREVIOUS still takes the bounces of mail forwarded before', async () => {
    const newSecret = randomBytes(24).toString('base64');
    const madeBefore = createSrs(SRS_SECRET).rewrite(ORIGINAL, A);
    const madeAfter = createSrs(newSecret).rewrite(ORIGINAL, A);
    const changing = await startTestEdge(db.dsn, { MAIL_SRS_SECRET: newSecret, MAIL_SRS_SECRET_PREVIOUS: SRS_SECRET, MAIL_MTA_HOSTNAME: HOSTNAME });
    const changed = await startTestEdge(db.dsn, { MAIL_SRS_SECRET: newSecret, MAIL_MTA_HOSTNAME: HOSTNAME });
    try {
      const replies = async (target: Edge) => {
        const client = await openSession(target, 'mx.external.test');
        expect((await client.command('MAIL FROM:<>')).code).toBe(250);
        const codes = [(await client.command(`RCPT TO:<${madeBefore}>`)).code, (await client.command(`RCPT TO:<${madeAfter}>`)).code];
        await client.quit();
        return codes;
      };
      expect(await replies(changing)).toEqual([250, 250]);
      // Once the previous secret is dropped, only what the new one made is taken.
      expect(await replies(changed)).toEqual([550, 250]);
    } finally {
      await Promise.all([changing.stop(), changed.stop()]);
    }
  });
});
