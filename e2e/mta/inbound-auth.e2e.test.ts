// Inbound SPF, DKIM, DMARC and ARC at the edge against a real DNS server (dnsmasq in a container,
// MAIL_DNS_SERVERS): keys generated here and published as TXT records, messages signed with
// mailauth's dkimSign and ARC-sealed with its sealing, sent through the edge by nodemailer and the
// raw client. Proves: pass and fail of each method recorded in the Authentication-Results header on
// top of the stored message and in mail.messages (a tampered body: dkim=fail); enforce refusing a certain DMARC p=reject failure
// with 550 5.7.1; a silent DNS server and an unreachable one giving temperror under annotate and
// 451 4.7.0 under enforce, never a 5xx; an ARC set from a forwarder evaluated as arc=pass.
import { createAlias, createDomain, createMailResolver } from '@postern/shared';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Api } from '../../apps/api/src/server.ts';
import { arcSealed, plainMessage, signed, type TestKey, testKey } from '../../apps/mta/src/auth/auth.testkit.ts';
import type { Edge } from '../../apps/mta/src/edge.ts';
import { gql, gqlData, mintToken, startTestApi } from '../api/helpers/api.ts';
import { type DnsServer, startDnsmasq } from '../harness/dnsmasq.ts';
import { createTestDatabase, type TestDatabase } from '../harness/index.ts';
import { metricsText, QUEUED, sendToDesk, startTestEdge } from './helpers/edge.ts';

let db: TestDatabase;
let dns: DnsServer;
let senderKey: TestKey;
let forwarderKey: TestKey;
let annotate: Edge;
let enforce: Edge;
let api: Api;

/** dnsmasq splits a TXT text at commas into character-strings (at most 255 bytes each); a DKIM
 *  record reads them joined. */
function txtStrings(value: string): string {
  return value.match(/.{1,250}/g)?.join(',') ?? value;
}

beforeAll(async () => {
  db = await createTestDatabase('mta-inbound-auth');
  await createDomain(db.pool, 'postern.test');
  await createAlias(db.pool, { domain: 'postern.test', localPart: 'desk', kind: 'forward', targets: ['desk@inbox.test'] });
  senderKey = await testKey('pass.auth.test');
  forwarderKey = await testKey('fwd.auth.test', 'arc');
  dns = await startDnsmasq({
    txt: [
      ['pass.auth.test', 'v=spf1 ip4:127.0.0.1 -all'],
      [senderKey.record.name, txtStrings(senderKey.record.value)],
      ['_dmarc.pass.auth.test', 'v=DMARC1; p=reject'],
      ['fwd.auth.test', 'v=spf1 ip4:127.0.0.1 -all'],
      ['spffail.auth.test', 'v=spf1 -all'],
      [forwarderKey.record.name, txtStrings(forwarderKey.record.value)],
      // Asked for only while the server is paused (nothing of it is in the edges' caches).
      ['silent.auth.test', 'v=spf1 ip4:127.0.0.1 -all'],
      ['_dmarc.silent.auth.test', 'v=DMARC1; p=reject'],
    ],
  });
  const env = { MAIL_DNS_SERVERS: dns.server, MAIL_INBOUND_AUTH_TIMEOUT: '3s' };
  annotate = await startTestEdge(db.dsn, env);
  enforce = await startTestEdge(db.dsn, { ...env, MAIL_INBOUND_AUTH_POLICY: 'enforce' });
  api = await startTestApi(db.dsn);
});

afterAll(async () => {
  await annotate?.stop();
  await enforce?.stop();
  await api?.stop();
  await dns?.close();
  await db?.drop();
});

function send(edge: Edge, from: string, message: Buffer, helo = 'mail.pass.auth.test') {
  return sendToDesk(edge, message, { from, helo });
}

async function stored(reply: string) {
  const id = QUEUED.exec(reply)?.[1];
  if (!id) throw new Error(`not accepted: ${reply}`);
  const { rows } = await db.pool.query(
    `SELECT m.auth_results, m.auth_verdicts, convert_from(substring(p.raw from 1 for 4000), 'UTF8') AS head
       FROM mail.messages m JOIN mail.message_payloads p ON p.message_id = m.id WHERE m.id = $1`,
    [id],
  );
  return rows[0] as { auth_results: string; auth_verdicts: Record<string, unknown>; head: string };
}

async function messageCount(): Promise<number> {
  return (await db.pool.query('SELECT count(*)::int AS n FROM mail.messages')).rows[0].n;
}

describe('inbound authentication against a real DNS server', () => {
  it('a signed message from a permitted client (nodemailer): spf, dkim and dmarc pass, in a header naming the edge and with the message', async () => {
    const message = await signed(plainMessage('Ann <ann@pass.auth.test>'), senderKey);
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: annotate.smtp.port, secure: false, ignoreTLS: true, name: 'mail.pass.auth.test' });
    const info = await transport.sendMail({ envelope: { from: 'ann@pass.auth.test', to: ['desk@postern.test'] }, raw: message });
    transport.close();
    const row = await stored(`250 ${info.response.replace(/^250 /, '')}`);
    expect(row.head).toMatch(/^Authentication-Results: mx\.postern\.test;\r\n\tdkim=pass [^\r\n]*;\r\n\tspf=pass [^\r\n]*;\r\n\tdmarc=pass [^\r\n]*\r\nReceived: from mail\.pass\.auth\.test /);
    expect(row.auth_results).toMatch(/^mx\.postern\.test;\r\n\tdkim=pass header\.i=@pass\.auth\.test header\.s=s1 /);
    expect(row.auth_verdicts).toMatchObject({ spf: 'pass', dkim: [{ result: 'pass', domain: 'pass.auth.test' }], dmarc: 'pass', dmarcPolicy: 'reject', arc: 'none' });

    // The API gives it with the message's deliveries, to a token with content:read only.
    const messageId = QUEUED.exec(`250 ${info.response.replace(/^250 /, '')}`)?.[1];
    const query = `query($id: ID!) { deliveries(filter: { messageId: $id }) { edges { node {
      inboundAuthentication { header spf dkim { result domain } dmarc dmarcPolicy arc incomplete } } } } }`;
    const reader = await mintToken(db.pool, ['deliveries:read:any', 'content:read']);
    const data = await gqlData(api, reader, query, { id: messageId });
    expect(data.deliveries.edges[0].node.inboundAuthentication).toEqual({
      header: row.auth_results,
      spf: 'pass',
      dkim: [{ result: 'pass', domain: 'pass.auth.test' }],
      dmarc: 'pass',
      dmarcPolicy: 'reject',
      arc: 'none',
      incomplete: null,
    });
    const metadataOnly = await gql(api, await mintToken(db.pool, ['deliveries:read:any']), query, { id: messageId });
    expect(metadataOnly.body.errors?.[0]?.extensions).toMatchObject({ code: 'FORBIDDEN', requiredScope: 'content:read' });
  });

  it('a tampered body: dkim=fail; a From domain nothing aligns with under p=reject: dmarc=fail stored under annotate, 550 5.7.1 under enforce and nothing stored', async () => {
    const original = await signed(plainMessage('ann@pass.auth.test', 'Pay invoice 1.\r\n'), senderKey);
    const tampered = Buffer.from(original.toString('latin1').replace('invoice 1', 'invoice 9'), 'latin1');
    const reply = await send(annotate, 'ann@pass.auth.test', tampered);
    const row = await stored(reply);
    expect(row.auth_results).toMatch(/\tdkim=fail /);
    expect(row.auth_verdicts).toMatchObject({ spf: 'pass', dkim: [{ result: 'fail' }] });

    const forged = plainMessage('ann@pass.auth.test');
    const annotated = await stored(await send(annotate, 'someone@fwd.auth.test', forged, 'mail.fwd.auth.test'));
    // SPF passes for fwd.auth.test, which does not align with the From domain: DMARC fails.
    expect(annotated.auth_verdicts).toMatchObject({ spf: 'pass', dmarc: 'fail', dmarcPolicy: 'reject' });
    expect(annotated.head).toMatch(/\tdmarc=fail /);

    const before = await messageCount();
    expect(await send(enforce, 'someone@fwd.auth.test', forged, 'mail.fwd.auth.test')).toMatch(
      /^550 5\.7\.1 Message refused: it fails the DMARC policy \(p=reject\) of pass\.auth\.test/,
    );
    expect(await messageCount()).toBe(before);
    // The same message signed by its domain passes under enforce.
    expect(await send(enforce, 'someone@fwd.auth.test', await signed(forged, senderKey), 'mail.fwd.auth.test')).toMatch(QUEUED);
  });

  it('spf=fail for a sender domain whose record lists no client', async () => {
    const row = await stored(await send(annotate, 'ann@spffail.auth.test', plainMessage('ann@spffail.auth.test'), 'mail.spffail.auth.test'));
    expect(row.auth_verdicts).toMatchObject({ spf: 'fail', dkim: [{ result: 'none' }], dmarc: 'none' });
    expect(row.auth_results).toMatch(/\tspf=fail [^\r\n]*smtp\.mailfrom=ann@spffail\.auth\.test/);
  });

  it('an ARC set sealed by a forwarder is evaluated: arc=pass', async () => {
    const resolver = createMailResolver({ servers: [dns.server], timeoutMs: 2_000 });
    const original = await signed(plainMessage('ann@pass.auth.test'), senderKey);
    const sealed = await arcSealed(original, forwarderKey, resolver, { ip: '127.0.0.1', helo: 'mail.pass.auth.test', sender: 'ann@pass.auth.test' });
    const row = await stored(await send(annotate, 'bounce@fwd.auth.test', sealed, 'mx.fwd.auth.test'));
    expect(row.auth_verdicts).toMatchObject({ arc: 'pass', spf: 'pass', dmarc: 'pass' });
    expect(row.auth_results).toMatch(/\tarc=pass /);
  });

  it('a DNS server that stops answering: temperror recorded under annotate, 451 4.7.0 under enforce, never 5xx', async () => {
    await dns.pause();
    try {
      const message = plainMessage('ann@silent.auth.test');
      const before = await messageCount();
      expect(await send(enforce, 'ann@silent.auth.test', message, 'mail.silent.auth.test')).toBe(
        '451 4.7.0 Temporary failure checking the sender (SPF/DKIM/DMARC), try again later',
      );
      expect(await messageCount()).toBe(before);
      const row = await stored(await send(annotate, 'ann@silent.auth.test', message, 'mail.silent.auth.test'));
      expect(row.auth_verdicts).toMatchObject({ spf: 'temperror', dmarc: 'temperror' });
      expect(row.auth_results).toMatch(/\tspf=temperror /);
    } finally {
      await dns.resume();
    }
  });

  it('MAIL_DNS_SERVERS unreachable: temperror under annotate, 451 4.7.0 under enforce', async () => {
    const env = { MAIL_DNS_SERVERS: '127.0.0.1:9', MAIL_INBOUND_AUTH_TIMEOUT: '2s' };
    const unreachableAnnotate = await startTestEdge(db.dsn, env);
    const unreachableEnforce = await startTestEdge(db.dsn, { ...env, MAIL_INBOUND_AUTH_POLICY: 'enforce' });
    try {
      const message = await signed(plainMessage('ann@pass.auth.test'), senderKey);
      expect(await send(unreachableEnforce, 'ann@pass.auth.test', message)).toMatch(/^451 4\.7\.0 /);
      const row = await stored(await send(unreachableAnnotate, 'ann@pass.auth.test', message));
      expect(row.auth_verdicts).toMatchObject({ spf: 'temperror', dkim: [{ result: 'temperror' }], dmarc: 'temperror' });
    } finally {
      await unreachableAnnotate.stop();
      await unreachableEnforce.stop();
    }
  });

  it('counts verdicts by method and result, and refusals by reason', async () => {
    expect(await metricsText(annotate)).toMatch(/^mail_mta_inbound_auth_results_total\{(?:[^}]*,)?method="dkim",result="pass"(?:,[^}]*)?\} [1-9]/m);
    expect(await metricsText(annotate)).toMatch(/^mail_mta_inbound_auth_results_total\{(?:[^}]*,)?method="dmarc",result="fail"(?:,[^}]*)?\} [1-9]/m);
    expect(await metricsText(enforce)).toMatch(/^mail_mta_rejections_total\{(?:[^}]*,)?stage="data",reason="dmarc_reject"(?:,[^}]*)?\} 1$/m);
  });
});
