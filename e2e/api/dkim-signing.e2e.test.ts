// DKIM end to end: keys are created, rotated and retired through GraphQL, each answer giving the
// TXT record to publish; the records are "published" to mailauth's verifier through its resolver
// hook (no DNS server needed); templated and rendered mail sent through the API, and Postern's own
// bounces, leave the engine signed and verify at the receiving side, while mail relayed for others
// is not signed; after the keys are retired and their records removed the next mail is unsigned.
// The API and the engine refuse to start when MAIL_SECRETS_KEY is missing or does not open the keys,
// and a key created later that the engine cannot open holds the mail back rather than sending it unsigned.
import { randomBytes, randomUUID } from 'node:crypto';
import { dkimVerify } from 'mailauth';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Api } from '../../apps/api/src/server.ts';
import type { Engine } from '../../apps/core/src/engine.ts';
import { insertAcceptedMessage } from '../core/helpers/engine.ts';
import { type ScriptedSmtp, startScriptedSmtp } from '../core/helpers/smtp-servers.ts';
import { type TestDatabase, waitFor } from '../harness/index.ts';
import { closeApiFile, gql, gqlData, mintToken, openApiFile, startTestApi } from './helpers/api.ts';
import { startTestEngine } from './helpers/engine.ts';

const SECRETS_KEY = randomBytes(32).toString('base64');
const DOMAIN = 'postern.test';

let db: TestDatabase;
let api: Api;
let engine: Engine | undefined;
let sink: ScriptedSmtp;
let admin: string;
let sender: string;

/** The zone as the verifier sees it: record name -> TXT value. */
const zone = new Map<string, string>();
const resolver = async (name: string, type: string) => {
  const value = type === 'TXT' ? zone.get(name) : undefined;
  if (value === undefined) throw Object.assign(new Error(`queryTxt ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
  return [[value]];
};

const KEY_FIELDS = 'id domain selector keyType status published createdAt activatedAt supersededAt retiredAt dnsRecord { name type value zoneFileLine }';
const CREATE = `mutation($input: CreateDkimKeyInput!) { createDkimKey(input: $input) {
  __typename ... on CreateDkimKeySuccess { data { ${KEY_FIELDS} } } ... on Error { message } ... on ValidationError { field code } } }`;
const ROTATE = `mutation($input: RotateDkimKeyInput!) { rotateDkimKey(input: $input) {
  __typename ... on RotateDkimKeySuccess { data { active { ${KEY_FIELDS} } superseded { ${KEY_FIELDS} } } } ... on Error { message } } }`;
const RETIRE = `mutation($input: RetireDkimKeyInput!) { retireDkimKey(input: $input) {
  __typename ... on RetireDkimKeySuccess { data { ${KEY_FIELDS} } } ... on Error { message } } }`;
const SEND = `mutation($input: SendEmailInput!) { sendEmail(input: $input) {
  __typename ... on SendEmailSuccess { data { delivery { id } } } ... on Error { message } } }`;

function recipient(label: string): string {
  return `${label}-${randomUUID().slice(0, 8)}@customers.test`;
}

/** Queues a rendered mail through sendEmail; returns its delivery id. */
async function sendRendered(to: string): Promise<string> {
  const answer = await gqlData(api, sender, SEND, { input: { to, idempotencyKey: randomUUID(), rendered: { subject: 'Your receipt', text: 'Thanks!' } } });
  expect(answer.sendEmail.__typename).toBe('SendEmailSuccess');
  return answer.sendEmail.data.delivery.id;
}

async function sendTemplate(to: string): Promise<void> {
  const variables = { code: '493817', expiresInMinutes: 10 };
  const answer = await gqlData(api, sender, SEND, { input: { to, idempotencyKey: randomUUID(), template: { id: 'login-code', locale: 'de-AT', variables } } });
  expect(answer.sendEmail.__typename).toBe('SendEmailSuccess');
}

/** The exact bytes the sink received for `to`. */
async function received(to: string): Promise<Buffer> {
  const message = await waitFor('the message at the sink', () => sink.messages.find((entry) => entry.to.includes(to)), (found) => found !== undefined);
  return (message as { raw: Buffer }).raw;
}

async function verify(raw: Buffer) {
  const result = await dkimVerify(raw, { resolver });
  return result.results.map((entry) => ({ result: entry.status.result, domain: entry.signingDomain, selector: entry.selector }));
}

beforeAll(async () => {
  ({ db, api } = await openApiFile('api-dkim', { MAIL_SECRETS_KEY: SECRETS_KEY }));
  sink = await startScriptedSmtp();
  admin = await mintToken(db.pool, ['dkim:read', 'dkim:write']);
  sender = await mintToken(db.pool, ['send']);
});

afterAll(async () => {
  await closeApiFile(db, api, engine);
  await sink?.close();
});

describe('DKIM keys through GraphQL, signatures verified at the receiving side', () => {
  it('without MAIL_SECRETS_KEY a key cannot be created: NOT_CONFIGURED, naming the variable', async () => {
    const bare = await startTestApi(db.dsn);
    try {
      const answer = await gql(bare, admin, CREATE, { input: { domain: DOMAIN, selector: 'never' } });
      expect(answer.body.errors?.[0]?.extensions?.code).toBe('NOT_CONFIGURED');
      expect(answer.body.errors?.[0]?.message).toMatch(/^MAIL_SECRETS_KEY is not set/);
    } finally {
      await bare.stop();
    }
    const refused = await gql(api, sender, `query { dkimKeys { edges { node { id } } } }`);
    expect(refused.body.errors?.[0]?.extensions).toMatchObject({ code: 'FORBIDDEN', requiredScope: 'dkim:read' });
  });

  it('a key created for a domain with none is active; its answer is the TXT record, never the private key', async () => {
    const answer = await gql(api, admin, CREATE, { input: { domain: 'Postern.test', selector: 'S2025', keyType: 'rsa2048' } });
    const key = (answer.body.data as { createDkimKey: { data: Record<string, unknown> & { dnsRecord: { name: string; value: string } } } }).createDkimKey.data;
    expect(key).toMatchObject({ domain: DOMAIN, selector: 's2025', keyType: 'rsa2048', status: 'active', published: true });
    expect(key.dnsRecord.name).toBe('s2025._domainkey.postern.test');
    expect(key.dnsRecord.value).toMatch(/^v=DKIM1; k=rsa; p=[A-Za-z0-9+/]+=*$/);
    const { rows } = await db.pool.query<{ sealed: Buffer }>('SELECT private_key_sealed AS sealed FROM mail.dkim_keys WHERE selector = $1', ['s2025']);
    const sealed = rows[0]?.sealed as Buffer;
    const text = JSON.stringify(answer.body);
    expect(text).not.toMatch(/PRIVATE KEY/);
    expect(text).not.toContain(sealed.toString('base64').slice(0, 40));
    expect(text).not.toContain(sealed.toString('hex').slice(0, 40));
    zone.set(key.dnsRecord.name, key.dnsRecord.value);

    const again = await gqlData(api, admin, CREATE, { input: { domain: DOMAIN, selector: 's2025' } });
    expect(again.createDkimKey).toMatchObject({ __typename: 'ConflictError' });
  });

  it('the engine refuses to start without MAIL_SECRETS_KEY, or with another one, once a key exists', async () => {
    await expect(startTestEngine(db.dsn, { MAIL_SMTP_ADDR: `127.0.0.1:${sink.port}` })).rejects.toThrow(/MAIL_SECRETS_KEY is not set: opening the DKIM key in the database \(/);
    await expect(
      startTestEngine(db.dsn, { MAIL_SMTP_ADDR: `127.0.0.1:${sink.port}`, MAIL_SECRETS_KEY: randomBytes(32).toString('base64') }),
    ).rejects.toThrow(/s2025\._domainkey\.postern\.test cannot be opened with MAIL_SECRETS_KEY: wrong key/);
    await expect(startTestApi(db.dsn)).rejects.toThrow(/MAIL_SECRETS_KEY is not set/);
    engine = await startTestEngine(db.dsn, { MAIL_SMTP_ADDR: `127.0.0.1:${sink.port}`, MAIL_SECRETS_KEY: SECRETS_KEY, MAIL_RETRY_LADDER: '300ms' });
  });

  it('templated and rendered mail sent through the API arrive signed and verify (pass)', async () => {
    const templated = recipient('template');
    const rendered = recipient('rendered');
    await sendTemplate(templated);
    await sendRendered(rendered);
    for (const to of [templated, rendered]) {
      expect(await verify(await received(to))).toEqual([{ result: 'pass', domain: DOMAIN, selector: 's2025' }]);
    }
  });

  it("Postern's bounce is signed; the relayed mail it reports on was not", async () => {
    const refused = recipient('refused');
    const bounced = recipient('bounced');
    sink.script(refused, [{ code: 550, message: '5.1.1 no such user' }]);
    await insertAcceptedMessage(db.pool, bounced, refused);
    const bounce = await received(bounced);
    expect(bounce.toString()).toContain('From: Mail Delivery System <MAILER-DAEMON@postern.test>');
    expect(await verify(bounce)).toEqual([{ result: 'pass', domain: DOMAIN, selector: 's2025' }]);
    const forwarded = recipient('forwarded');
    const { raw } = await insertAcceptedMessage(db.pool, 'alice@outside.test', forwarded);
    // Relayed byte for byte: its own (fake) signature is all it carries.
    expect((await received(forwarded)).equals(raw)).toBe(true);
  });

  it('a pending key signs only once rotated to; the superseded key signs no more but stays published', async () => {
    const created = await gqlData(api, admin, CREATE, { input: { domain: DOMAIN, selector: 's2026', keyType: 'ed25519' } });
    const pending = created.createDkimKey.data;
    expect(pending).toMatchObject({ status: 'pending', keyType: 'ed25519', activatedAt: null });
    expect(pending.dnsRecord.value).toMatch(/^v=DKIM1; k=ed25519; p=/);
    zone.set(pending.dnsRecord.name, pending.dnsRecord.value);
    const before = recipient('before-rotation');
    await sendRendered(before);
    expect(await verify(await received(before))).toEqual([{ result: 'pass', domain: DOMAIN, selector: 's2025' }]);

    const rotated = await gqlData(api, admin, ROTATE, { input: { domain: DOMAIN, selector: 's2026' } });
    expect(rotated.rotateDkimKey.data.active).toMatchObject({ selector: 's2026', status: 'active', published: true });
    expect(rotated.rotateDkimKey.data.superseded).toMatchObject({ selector: 's2025', status: 'superseded', published: true });
    const after = recipient('after-rotation');
    await sendTemplate(after);
    expect(await verify(await received(after))).toEqual([{ result: 'pass', domain: DOMAIN, selector: 's2026' }]);

    const listed = await gqlData(api, admin, '{ dkimKeys(domain: "postern.test") { edges { node { selector status } } } }');
    expect(listed.dkimKeys.edges.map((edge: { node: unknown }) => edge.node)).toEqual([
      { selector: 's2025', status: 'superseded' },
      { selector: 's2026', status: 'active' },
    ]);
  });

  it('retired keys with their records removed: the next mail is unsigned, and the old signatures fail', async () => {
    const signedEarlier = await received(sink.messages.find((entry) => entry.to.some((to) => to.startsWith('after-rotation')))?.to[0] as string);
    for (const selector of ['s2025', 's2026']) {
      const retired = await gqlData(api, admin, RETIRE, { input: { domain: DOMAIN, selector } });
      expect(retired.retireDkimKey.data).toMatchObject({ selector, status: 'retired', published: false });
      zone.delete(retired.retireDkimKey.data.dnsRecord.name);
    }
    const { rows } = await db.pool.query('SELECT count(*)::int AS n FROM mail.dkim_keys WHERE private_key_sealed IS NOT NULL');
    expect(rows[0].n).toBe(0);
    const next = recipient('after-retirement');
    await sendRendered(next);
    const raw = await received(next);
    expect(raw.toString()).not.toMatch(/^DKIM-Signature:/im);
    expect((await verify(raw)).map((entry) => entry.result)).not.toContain('pass');
    expect((await verify(signedEarlier)).map((entry) => entry.result)).not.toContain('pass');
    const again = await gqlData(api, admin, RETIRE, { input: { domain: DOMAIN, selector: 's2025' } });
    expect(again.retireDkimKey.__typename).toBe('ConflictError');
  });

  it('a key the engine cannot open holds the mail back, saying why, until it is retired; it is never sent unsigned meanwhile', async () => {
    // An API with another MAIL_SECRETS_KEY starts (no unretired key to check) and creates a key
    // the running engine cannot open.
    const stranger = await startTestApi(db.dsn, { MAIL_SECRETS_KEY: randomBytes(32).toString('base64') });
    try {
      const created = await gqlData(stranger, admin, CREATE, { input: { domain: DOMAIN, selector: 's2027' } });
      expect(created.createDkimKey.data).toMatchObject({ selector: 's2027', status: 'active' });
    } finally {
      await stranger.stop();
    }
    const to = recipient('held');
    const id = await sendRendered(to);
    const held = await waitFor(
      'the delivery held back with the reason',
      async () => (await db.pool.query('SELECT status, last_error FROM mail.deliveries WHERE id = $1', [id])).rows[0],
      (row) => typeof row?.last_error === 'string' && row.last_error.startsWith('DKIM signing unavailable'),
    );
    expect(held.last_error).toContain('s2027._domainkey.postern.test cannot be opened with MAIL_SECRETS_KEY');
    const attempts = await db.pool.query('SELECT count(*)::int AS n FROM mail.attempts WHERE delivery_id = $1', [id]);
    expect(attempts.rows[0].n).toBe(0);
    expect(sink.messages.some((message) => message.to.includes(to))).toBe(false);

    await gqlData(api, admin, RETIRE, { input: { domain: DOMAIN, selector: 's2027' } });
    const raw = await received(to);
    expect(raw.toString()).not.toMatch(/^DKIM-Signature:/im);
  });
});
