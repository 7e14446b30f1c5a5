// Input validation at the API boundary, over HTTP against a real PostgreSQL: every hostile input
// measured against it is refused with a message naming the problem (typed ValidationError for mutations,
// BAD_USER_INPUT for query arguments), and no hostile request gets a 5xx.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Api } from '../../apps/api/src/server.ts';
import type { TestDatabase } from '../harness/index.ts';
import { closeApiFile, gql, gqlData, mintToken, openApiFile } from './helpers/api.ts';

let db: TestDatabase;
let api: Api;
let admin: string;

beforeAll(async () => {
  ({ db, api } = await openApiFile('api-input-validation'));
  admin = await mintToken(db.pool, ['admin']);
});

afterAll(() => closeApiFile(db, api));

const CREATE_DOMAIN = `mutation($name: String!) {
  createDomain(name: $name) {
    __typename
    ... on CreateDomainSuccess { data { name } }
    ... on Error { message }
    ... on ValidationError { field code }
  }
}`;

const ADD_SUPPRESSION = `mutation($address: String!) {
  addSuppression(input: { address: $address }) {
    __typename
    ... on AddSuppressionSuccess { data { address } }
    ... on Error { message }
    ... on ValidationError { field code }
  }
}`;

/** The one error of a refused query, which must be BAD_USER_INPUT. */
async function badUserInput(query: string, variables: Record<string, unknown> = {}): Promise<string> {
  const answer = await gql(api, admin, query, variables);
  expect(answer.status, JSON.stringify(answer.body)).toBeLessThan(500);
  const errors = answer.body.errors ?? [];
  expect(errors, JSON.stringify(answer.body)).toHaveLength(1);
  expect(errors[0]?.extensions?.code, JSON.stringify(answer.body)).toBe('BAD_USER_INPUT');
  return errors[0]?.message ?? '';
}

describe('domains and addresses: refused, never rewritten', () => {
  it.each([
    ['example.test/x', /"\/" \(U\+002F\) in label 2/],
    ['ev\r\nil.test', /U\+000D in label 1/],
    ['ev%69l.test', /"%" \(U\+0025\) in label 1/],
    ['a?b', /"\?" \(U\+003F\)/],
    ['a#b', /"#" \(U\+0023\)/],
    [`${'a'.repeat(64)}.test`, /is 64 octets; at most 63/],
    ['ev\u00adil.test', /invisible/],
  ])('createDomain(%j) is a ValidationError naming the problem', async (name, reason) => {
    const answer = await gqlData(api, admin, CREATE_DOMAIN, { name });
    expect(answer.createDomain).toMatchObject({ __typename: 'ValidationError', field: 'domain', code: 'INVALID_ADDRESS' });
    expect(answer.createDomain.message).toMatch(reason);
    // And nothing was stored under another name.
    const stored = await db.pool.query('SELECT name FROM mail.domains');
    expect(stored.rows).toEqual([]);
  });

  it('keeps the limits exactly: a 63-octet label and a 254-octet address are accepted', async () => {
    const created = await gqlData(api, admin, CREATE_DOMAIN, { name: `${'a'.repeat(63)}.test` });
    expect(created.createDomain).toMatchObject({ __typename: 'CreateDomainSuccess', data: { name: `${'a'.repeat(63)}.test` } });
    const domain190 = `${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(57)}.test`;
    const ok = await gqlData(api, admin, ADD_SUPPRESSION, { address: `${'a'.repeat(63)}@${domain190}` });
    expect(ok.addSuppression.__typename).toBe('AddSuppressionSuccess');
    const over = await gqlData(api, admin, ADD_SUPPRESSION, { address: `${'a'.repeat(64)}@${domain190}` });
    expect(over.addSuppression).toMatchObject({ __typename: 'ValidationError', code: 'INVALID_ADDRESS' });
    expect(over.addSuppression.message).toMatch(/255 octets; at most 254/);
    // The 320-character address measured before.
    const long = await gqlData(api, admin, ADD_SUPPRESSION, { address: `${'a'.repeat(64)}@${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(63)}.${'e'.repeat(61)}` });
    expect(long.addSuppression.__typename).toBe('ValidationError');
  });

  it('refuses a malformed domain or address in a query argument with BAD_USER_INPUT', async () => {
    expect(await badUserInput('query($n: String!) { domain(name: $n) { name } }', { n: 'ev%69l.test' })).toMatch(/"%"/);
    expect(await badUserInput('query($d: String!) { aliases(domain: $d) { edges { cursor } } }', { d: 'example.test/x' })).toMatch(/"\/"/);
    expect(await badUserInput('query($a: String!) { suppression(address: $a) { address } }', { a: ' a@example.test' })).toMatch(/U\+0020/);
  });
});

describe('cursors', () => {
  const forged = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

  it('refuses a cursor of another list, an out-of-range id, a forged or truncated one', async () => {
    await gqlData(api, admin, CREATE_DOMAIN, { name: 'one.test' });
    await gqlData(api, admin, CREATE_DOMAIN, { name: 'two.test' });
    const page = await gqlData(api, admin, '{ domains(first: 1) { edges { cursor } pageInfo { endCursor } } }');
    const cursor = page.domains.pageInfo.endCursor as string;
    // Our own cursor still works, forwards and backwards.
    const next = await gqlData(api, admin, 'query($c: String!) { domains(first: 1, after: $c) { edges { node { name } } } }', { c: cursor });
    expect(next.domains.edges).toHaveLength(1);

    const query = 'query($c: String!) { domains(first: 5, after: $c) { edges { cursor } } }';
    await gqlData(api, admin, ADD_SUPPRESSION, { address: 'cursor@one.test' });
    const suppressions = await gqlData(api, admin, '{ suppressions(first: 1) { pageInfo { endCursor } } }');
    expect(await badUserInput(query, { c: suppressions.suppressions.pageInfo.endCursor })).toMatch(/another list/);
    expect(await badUserInput(query, { c: forged(['domains', '2025-01-01T00:00:00.000000Z', '9223372036854775808']) })).toMatch(/id/);
    expect(await badUserInput(query, { c: forged(['domains', '2025-01-01T00:00:00.000000Z', '0b0a4c2e-1f2a-4c1b-9d5e-0123456789ab']) })).toMatch(/id/);
    expect(await badUserInput(query, { c: forged(['domains', '2025-02-30T00:00:00.000000Z', '1']) })).toMatch(/timestamp/);
    expect(await badUserInput(query, { c: cursor.slice(0, -4) })).toMatch(/invalid cursor/);
    expect(await badUserInput(query, { c: 'AAAA' })).toMatch(/invalid cursor/);
    expect(
      await badUserInput('query($c: String!) { deliveries(last: 5, before: $c) { edges { cursor } } }', {
        c: forged(['deliveries', '2025-01-01T00:00:00.000000Z', '12']),
      }),
    ).toMatch(/"before": its id is not a UUID/);
    expect(await badUserInput('{ domains(first: -1) { edges { cursor } } }')).toMatch(/non-negative/);
  });
});

describe('DateTime', () => {
  it.each([
    ['2025-02-30T00:00:00Z'],
    ['2025-01-01T00:00:00'],
    ['2025-01-01'],
    ['yesterday'],
  ])('refuses %j as a variable and as a literal', async (value) => {
    const asVariable = await badUserInput('query($t: DateTime!) { deliveries(filter: { createdAfter: $t }) { edges { cursor } } }', { t: value });
    expect(asVariable).toMatch(/RFC 3339 date-time with an offset/);
    const asLiteral = await badUserInput(`{ deliveries(filter: { createdAfter: ${JSON.stringify(value)} }) { edges { cursor } } }`);
    expect(asLiteral).toMatch(/RFC 3339 date-time with an offset/);
  });

  it('accepts RFC 3339 with an offset', async () => {
    const answer = await gqlData(api, admin, 'query($t: DateTime!) { deliveries(filter: { createdAfter: $t }) { edges { cursor } } }', {
      t: '2025-02-28T23:00:00+01:00',
    });
    expect(answer.deliveries.edges).toEqual([]);
  });
});

/** One raw HTTP/1.1 exchange; resolves with the status code (0 if the server only closed). */
async function rawRequest(port: number, request: string | Buffer): Promise<number> {
  return (await rawExchange(port, request)).status;
}

/** One raw HTTP/1.1 exchange: the status code (0 if the server only closed) and the body as text. */
function rawExchange(port: number, request: string | Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let answer = '';
    const answered = () => ({
      status: Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0),
      body: Buffer.from(answer.slice(answer.indexOf('\r\n\r\n') + 4), 'latin1').toString('utf8'),
    });
    socket.on('data', (chunk) => {
      answer += chunk.toString('latin1');
    });
    socket.on('error', (error) => {
      if ((error as NodeJS.ErrnoException).code === 'ECONNRESET') resolve(answered());
      else reject(error);
    });
    socket.on('close', () => resolve(answered()));
    // No half-close: node's HTTP server drops a request whose client sent FIN before the answer.
    // "Connection: close" in every request makes the server close when it has answered.
    socket.write(typeof request === 'string' ? Buffer.from(request, 'latin1') : request);
    socket.setTimeout(20_000, () => socket.destroy(new Error('no answer within 20 s')));
  });
}

describe('hostile HTTP: 4xx with a reason, never 5xx', () => {
  const json = (body: string | Buffer) => {
    const bytes = Buffer.from(body);
    const head = `POST /graphql HTTP/1.1\r\nHost: api.test\r\nAuthorization: Bearer ${admin}\r\nContent-Type: application/json\r\nContent-Length: ${bytes.length}\r\nConnection: close\r\n\r\n`;
    return Buffer.concat([Buffer.from(head), bytes]).toString('latin1');
  };

  it.each([
    ['a malformed Host header', () => json('{"query":"{ __typename }"}').replace('Host: api.test', 'Host: [')],
    ['a Host header with a path', () => json('{"query":"{ __typename }"}').replace('Host: api.test', 'Host: a/b?c#d')],
    ['bad percent-encoding in the path', () => 'GET /graphql%ff%fe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'],
    ['bad percent-encoding in the query', () => `GET /graphql?query=%ff%fe HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${admin}\r\nConnection: close\r\n\r\n`],
    ['an absolute-form target with a broken host', () => 'GET http://[/graphql HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'],
    ['an absolute-form target with userinfo (found by the property below)', () => 'GET http://a@a/graphql HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'],
    ['a 64 KiB header', () => `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\nConnection: close\r\n\r\n`],
    ['bad JSON', () => json('{"query": ')],
    ['JSON that is not an object', () => json('[1,2,3]')],
    ['invalid UTF-8 in the body', () => Buffer.from(json(Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d])), 'latin1')],
    ['a wrong content type', () => json('{"query":"{ __typename }"}').replace('application/json', 'text/plain')],
    ['an unknown content type', () => json('<xml/>').replace('application/json', 'application/xml')],
    ['TRACE', () => `TRACE /graphql HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${admin}\r\nConnection: close\r\n\r\n`],
    ['a bad Content-Length', () => 'POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\nConnection: close\r\n\r\n'],
    ['/readyz with a broken Host', () => 'GET /readyz HTTP/1.1\r\nHost: [\r\nConnection: close\r\n\r\n'],
    ['/metrics%', () => 'GET /metrics% HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'],
  ])('%s', async (_name, build) => {
    const status = await rawRequest(api.http.port, build());
    expect(status).toBeGreaterThanOrEqual(400);
    expect(status).toBeLessThan(500);
    // And the server still answers an ordinary request.
    expect((await fetch(`http://127.0.0.1:${api.http.port}/healthz`)).status).toBe(200);
  });

  // yoga answers a missing query 200 when the client accepts application/json (curl's and fetch's
  // */* included): it marks that error as one the GraphQL-over-HTTP spec wants answered 200. The
  // spec's "Invalid parameters" (a request without its required `query`) are a 400 there too.
  it.each([
    ['"query": null', '*/*', '{"query":null}'],
    ['no "query"', 'application/json', '{"variables":{}}'],
    ['an empty object', null, '{}'],
    ['"query": null', 'application/graphql-response+json', '{"query":null}'],
  ])('a body with %s (Accept: %s) is a 400 with a GraphQL error saying a query is needed', async (_name, accept, body) => {
    const request = json(body).replace('Content-Type:', accept ? `Accept: ${accept}\r\nContent-Type:` : 'Content-Type:');
    const answer = await rawExchange(api.http.port, request);
    expect(answer.status, answer.body).toBe(400);
    expect(JSON.parse(answer.body)).toEqual({ errors: [{ message: 'Must provide query string.', extensions: { code: 'BAD_REQUEST' } }] });
  });

  it('two Authorization headers are a 400, whichever comes first, and nothing runs', async () => {
    const create = (name: string) => json(`{"query":"mutation { createDomain(name: \\"${name}\\") { __typename } }"}`);
    const second = `Authorization: Bearer pst_${'A'.repeat(43)}\r\n`;
    const twice = (request: string) => request.replace('Content-Type:', `${second}Content-Type:`);
    expect(await rawRequest(api.http.port, twice(create('twice-a.test')))).toBe(400);
    const secondFirst = create('twice-b.test').replace(`Authorization: Bearer ${admin}\r\n`, `${second}Authorization: Bearer ${admin}\r\n`);
    expect(await rawRequest(api.http.port, secondFirst)).toBe(400);
    const { rows } = await db.pool.query("SELECT name FROM mail.domains WHERE name LIKE 'twice-%'");
    expect(rows).toEqual([]);
    // One header, in any letter case, is served.
    expect(await rawRequest(api.http.port, create('twice-c.test').replace('Authorization: Bearer', 'authorization: bearer'))).toBe(200);
  });

  // RFC 3986 lets these through as host[:port], WHATWG URL does not: yoga's adapter builds a URL
  // from the Host header, so the route gives it a fixed one.
  it.each(['a:99999', '%', '[a]'])('a Host header no URL accepts (%s) is served like any other', async (host) => {
    expect(await rawRequest(api.http.port, json('{"query":"{ __typename }"}').replace('Host: api.test', `Host: ${host}`))).toBe(200);
  });

  it('an absolute-form target with userinfo is served as its path and query', async () => {
    const get = `GET http://a@a/graphql?query=%7B__typename%7D HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${admin}\r\nX-Postern-Csrf: 1\r\nConnection: close\r\n\r\n`;
    expect(await rawRequest(api.http.port, get)).toBe(200);
  });
});

describe('a body that is not UTF-8: refused whole, nothing stored altered', () => {
  // JSON is UTF-8 (RFC 8259 8.1). Bytes that are not were decoded leniently and reached the
  // resolvers as U+FFFD: a Latin-1 subject was stored and mailed as "Gr\uFFFD\uFFFDe", where the
  // stream refuses the same command (invalid_field).
  const SEND = 'mutation($i: SendEmailInput!) { sendEmail(input: $i) { __typename ... on Error { message } } }';
  const post = (body: Buffer) =>
    fetch(api.url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${admin}` }, body: new Uint8Array(body) });
  /** The JSON text of one operation, with `marker` (a JSON string's content) replaced by raw bytes. */
  const withBytes = (variables: Record<string, unknown>, query: string, bytes: number[]) => {
    const [head, tail] = JSON.stringify({ query, variables }).split('@@BYTES@@') as [string, string];
    return Buffer.concat([Buffer.from(head), Buffer.from(bytes), Buffer.from(tail)]);
  };

  it.each([
    ['Latin-1 in a rendered subject', 'subject', [0x47, 0x72, 0xfc, 0xdf, 0x65]],
    ['CESU-8 surrogate bytes in a rendered text', 'text', [0xed, 0xa0, 0x80]],
    ['a truncated sequence in a template variable', 'variable', [0x61, 0xe2, 0x82]],
  ])('%s: HTTP 400 naming UTF-8, no delivery, no quarantined copy', async (_name, where, bytes) => {
    const key = `not-utf8-${where}`;
    const input =
      where === 'variable'
        ? { to: 'ann@customer.test', idempotencyKey: key, template: { id: 'login-code', variables: { code: '@@BYTES@@', expiresInMinutes: 5 } } }
        : { to: 'ann@customer.test', idempotencyKey: key, rendered: { subject: where === 'subject' ? '@@BYTES@@' : 's', text: where === 'text' ? '@@BYTES@@' : 't' } };
    const response = await post(withBytes({ i: input }, SEND, bytes));
    const text = await response.text();
    expect(response.status, text).toBe(400);
    expect(JSON.parse(text).errors[0]).toMatchObject({ message: expect.stringMatching(/not valid UTF-8/), extensions: { code: 'BAD_REQUEST' } });
    expect((await db.pool.query('SELECT count(*)::int AS n FROM mail.deliveries WHERE idempotency_key = $1', [key])).rows[0].n).toBe(0);
    expect((await db.pool.query("SELECT count(*)::int AS n FROM mail.malformed_commands WHERE raw LIKE '%' || $1 || '%'", [key])).rows[0].n).toBe(0);
  });

  it('a note in invalid UTF-8 is not stored; the same note in UTF-8 is stored exactly', async () => {
    const ADD = 'mutation($i: AddSuppressionInput!) { addSuppression(input: $i) { __typename ... on AddSuppressionSuccess { data { note } } } }';
    const refused = await post(withBytes({ i: { address: 'latin1@customer.test', note: '@@BYTES@@' } }, ADD, [0x47, 0x72, 0xfc, 0xdf, 0x65]));
    expect(refused.status).toBe(400);
    expect((await db.pool.query("SELECT count(*)::int AS n FROM mail.suppressions WHERE address = 'latin1@customer.test'")).rows[0].n).toBe(0);
    const accepted = await post(Buffer.from(JSON.stringify({ query: ADD, variables: { i: { address: 'latin1@customer.test', note: 'Grüße' } } }), 'utf8'));
    expect(await accepted.json()).toEqual({ data: { addSuppression: { __typename: 'AddSuppressionSuccess', data: { note: 'Grüße' } } } });
  });
});

describe('GraphQL parameters outside a JSON body: 4xx, never 5xx', () => {
  // What a browser may send only with the CSRF header (limits.e2e.test.ts): with it, these reach
  // the request parsers. yoga's own JSON.parse of `variables`/`extensions` from a query string or a
  // form was unguarded (HTTP 500), and so was a multipart `map` that is not a list of paths.
  const send = (init: RequestInit & { search?: string }) =>
    fetch(`${api.url}${init.search ?? ''}`, { ...init, headers: { authorization: `Bearer ${admin}`, 'x-postern-csrf': '1', ...init.headers } });
  const form = (fields: Record<string, string>) => ({ method: 'POST', body: new URLSearchParams(fields) });
  const multipart = (map: string) => {
    const body = new FormData();
    body.set('operations', JSON.stringify({ query: '{ __typename }' }));
    body.set('map', map);
    body.set('0', new Blob(['a file']), 'a.txt');
    return { method: 'POST', body };
  };

  it.each([
    ['GET with variables that are not JSON', { search: '?query=%7B__typename%7D&variables=%7B' }, 400, /"variables" is not valid JSON/],
    ['GET with extensions that are not JSON', { search: '?query=%7B__typename%7D&extensions=%7Bx' }, 400, /"extensions" is not valid JSON/],
    ['a form post with variables that are not JSON', form({ query: '{ __typename }', variables: '{' }), 400, /"variables" is not valid JSON/],
    ['a multipart post (Postern takes no uploads)', multipart('{"0":["variables.file"]}'), 415, null],
    ['a multipart post whose map is not a list of paths', multipart('{"0":5}'), 415, null],
  ] as const)('%s', async (_name, init, status, reason) => {
    const response = await send(init);
    const text = await response.text();
    expect(response.status, text).toBe(status);
    if (reason) expect(JSON.parse(text).errors[0].message).toMatch(reason);
    // The same parameters, well-formed, still work.
    expect((await send({ search: '?query=%7B__typename%7D&variables=%7B%7D' })).status).toBe(200);
    expect((await send(form({ query: '{ __typename }', variables: '{}' }))).status).toBe(200);
  });
});

describe('percent-encoded bytes that are not UTF-8: refused, nothing stored altered', () => {
  // A query string or form body is checked as UTF-8 before it is percent-decoded, and decoding
  // turned %FC (Latin-1 "ü") or %ED%A0%80 (an encoded surrogate) into U+FFFD: a form post's note
  // was stored as "Gr\uFFFD\uFFFDe", as the JSON body's was before it was checked (above).
  const ADD = 'mutation($n: String) { addSuppression(input: { address: "pct@customer.test", note: $n }) { __typename } }';
  const headers = () => ({ authorization: `Bearer ${admin}`, 'x-postern-csrf': '1' });
  const encoded = (text: string) => encodeURIComponent(text);
  const variables = (bytes: string) => `${encoded('{"n":"Gr')}${bytes}${encoded('e"}')}`;

  it.each([
    ['Latin-1 in a form post', '%FC%DF'],
    ['an encoded surrogate in a form post', '%ED%A0%80'],
    ['a truncated sequence in a form post', '%E2%82'],
  ])('%s: HTTP 400 naming UTF-8, nothing stored', async (_name, bytes) => {
    const response = await fetch(api.url, {
      method: 'POST',
      headers: { ...headers(), 'content-type': 'application/x-www-form-urlencoded' },
      body: `query=${encoded(ADD)}&variables=${variables(bytes)}`,
    });
    const text = await response.text();
    expect(response.status, text).toBe(400);
    expect(JSON.parse(text).errors[0]).toMatchObject({ message: expect.stringMatching(/not valid UTF-8/), extensions: { code: 'BAD_REQUEST' } });
    expect((await db.pool.query("SELECT count(*)::int AS n FROM mail.suppressions WHERE address = 'pct@customer.test'")).rows[0].n).toBe(0);
  });

  it('the same in a GET query string is a 400; well-formed UTF-8 percent-encoded is served', async () => {
    const query = 'query($n: String!) { suppression(address: $n) { address } }';
    const refused = await fetch(`${api.url}?query=${encoded(query)}&variables=${variables('%FC')}`, { headers: headers() });
    expect(refused.status, await refused.text()).toBe(400);
    const served = await fetch(`${api.url}?query=${encoded(query)}&variables=${encoded('{"n":"grüße@customer.test"}')}`, { headers: headers() });
    expect(await served.json()).toEqual({ data: { suppression: null } });
    // A "%" that starts no escape is kept as it is, as URLSearchParams does: not a refusal.
    expect((await fetch(`${api.url}?query=${encoded('{ __typename }')}&x=%ZZ`, { headers: headers() })).status).toBe(200);
    // And a form post in UTF-8 stores the note exactly.
    const stored = await fetch(api.url, {
      method: 'POST',
      headers: { ...headers(), 'content-type': 'application/x-www-form-urlencoded' },
      body: `query=${encoded(ADD)}&variables=${encoded('{"n":"Grüße"}')}`,
    });
    expect(await stored.json()).toEqual({ data: { addSuppression: { __typename: 'AddSuppressionSuccess' } } });
    const { rows } = await db.pool.query("SELECT note FROM mail.suppressions WHERE address = 'pct@customer.test'");
    expect(rows).toEqual([{ note: 'Grüße' }]);
  });
});

describe('documents nested beyond what the parser can recurse into', () => {
  it.each([
    ['selections', `{ ${'a { '.repeat(5_000)}b${' }'.repeat(5_000)} }`],
    ['a list value', `{ domain(name: ${'['.repeat(3_000)}${']'.repeat(3_000)}) { name } }`],
    ['an object value', `{ domain(name: ${'{a: '.repeat(5_000)}1${'}'.repeat(5_000)}) { name } }`],
  ])('%s: a syntax error naming the token limit or the nesting, not a stack overflow', async (_name, query) => {
    const answer = await gql(api, admin, query);
    expect(answer.status, JSON.stringify(answer.body).slice(0, 300)).toBeLessThan(500);
    expect(answer.body.errors?.[0]?.message).toMatch(/^Syntax Error: Document (contains more th[a-z]+ 2000 tokens|nested too deeply)/);
  });
});

describe('list filters', () => {
  it('refuses a NUL or a malformed address in a filter with BAD_USER_INPUT, not a database error', async () => {
    expect(await badUserInput('query($s: String!) { deliveries(filter: { source: $s }) { edges { cursor } } }', { s: 'bill\u0000ing' })).toMatch(
      /filter\.source contains a NUL/,
    );
    expect(await badUserInput('query($s: String!) { malformedCommands(filter: { source: $s }) { edges { cursor } } }', { s: 'x\ud800' })).toMatch(
      /lone UTF-16 surrogate/,
    );
    expect(await badUserInput('query($r: String!) { deadLetters(filter: { recipient: $r }) { edges { cursor } } }', { r: 'a\u0000@b.test' })).toMatch(
      /filter\.recipient/,
    );
    // A filter in Unicode finds what is stored as A-labels.
    const found = await gqlData(api, admin, 'query($r: String!) { deliveries(filter: { recipient: $r }) { edges { cursor } } }', { r: 'A@Bücher.example' });
    expect(found.deliveries.edges).toEqual([]);
  });
});

describe('random requests (property)', () => {
  it('no request line, header or body gets a 5xx, and the server keeps answering', async () => {
    const { default: fc } = await import('fast-check');
    const token = fc.constantFrom('', `Bearer ${admin}`, 'Bearer x', 'Basic abc');
    const target = fc.oneof(
      fc.constantFrom('/graphql', '/healthz', '/readyz', '/metrics', '/', '/graphql?query=%7B__typename%7D'),
      fc.string({ unit: fc.constantFrom(...'/%?#[]@:abcf0xyz.-~!$&\'()*+,;=ÿ'), maxLength: 40 }).map((tail) => `/${tail}`),
      fc.string({ unit: fc.constantFrom(...'abc:/[]%@.'), maxLength: 20 }).map((host) => `http://${host}/graphql`),
    );
    const host = fc.oneof(fc.constantFrom('api.test', '127.0.0.1:4000', '[::1]', ''), fc.string({ unit: fc.constantFrom(...'ab[]:/%@#?. 1'), maxLength: 12 }));
    const body = fc.oneof(
      fc.constantFrom('', '{"query":"{ __typename }"}', '{"query":"{ domains { edges { cursor } } }","variables":{"x":1}}', 'null', '{"query":1}'),
      fc.json(),
      fc.string({ maxLength: 200 }),
      fc.uint8Array({ maxLength: 200 }).map((bytes) => Buffer.from(bytes).toString('latin1')),
    );
    const contentType = fc.constantFrom('application/json', 'application/graphql', 'text/plain', 'multipart/form-data; boundary=x', 'application/x-www-form-urlencoded', '');
    const method = fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'HEAD', 'PATCH', 'TRACE');
    await fc.assert(
      fc.asyncProperty(method, target, host, token, contentType, body, async (verb, path, hostValue, auth, type, payload) => {
        const bytes = Buffer.from(payload, 'latin1');
        const head = [
          `${verb} ${path} HTTP/1.1`,
          `Host: ${hostValue}`,
          ...(auth ? [`Authorization: ${auth}`] : []),
          ...(type ? [`Content-Type: ${type}`] : []),
          `Content-Length: ${bytes.length}`,
          'Connection: close',
        ].join('\r\n');
        const status = await rawRequest(api.http.port, Buffer.concat([Buffer.from(`${head}\r\n\r\n`, 'latin1'), bytes]));
        const shown = `${verb} ${path} Host: ${hostValue} (${type}) ${payload.slice(0, 80)}`;
        expect(status, shown).toBeGreaterThanOrEqual(200);
        expect(status, shown).toBeLessThan(500);
      }),
      { numRuns: 300 },
    );
    expect((await fetch(`http://127.0.0.1:${api.http.port}/healthz`)).status).toBe(200);
  });
});

describe('random argument values (property)', () => {
  it('no string argument makes an operation fail with INTERNAL_SERVER_ERROR', async () => {
    const { default: fc } = await import('fast-check');
    const operations = [
      'query($v: String!) { domain(name: $v) { name } }',
      'query($v: String!) { aliases(domain: $v) { edges { cursor } } }',
      'query($v: String!) { suppression(address: $v) { address } }',
      'query($v: String!) { deliveries(filter: { recipient: $v }) { edges { cursor } } }',
      'query($v: String!) { deliveries(filter: { source: $v }) { edges { cursor } } }',
      'query($v: String!) { deadLetters(filter: { recipient: $v, source: $v }) { edges { cursor } } }',
      'query($v: String!) { malformedCommands(filter: { source: $v }) { edges { cursor } } }',
      'query($v: String!) { domains(after: $v) { edges { cursor } } }',
      'query($v: String!) { deliveries(last: 3, before: $v) { edges { cursor } } }',
      'query($v: ID!) { alias(id: $v) { id } }',
      'query($v: ID!) { delivery(id: $v) { id } }',
      'query($v: DateTime!) { deliveries(filter: { createdBefore: $v }) { edges { cursor } } }',
      'mutation($v: String!) { createDomain(name: $v) { __typename } }',
      'mutation($v: String!) { addSuppression(input: { address: $v }) { __typename } }',
      'mutation($v: String!) { removeSuppression(address: $v) { __typename } }',
      'mutation($v: String!) { createAlias(input: { domain: "one.test", localPart: $v, targets: [$v] }) { __typename } }',
      'mutation($v: String!) { createAlias(input: { domain: "one.test", targets: ["t@elsewhere.test"], description: $v }) { __typename } }',
      'mutation($v: String!) { addSuppression(input: { address: "note@one.test", note: $v }) { __typename } }',
      'mutation($v: String) { removeSuppression(address: "note@one.test") { __typename } }',
    ];
    const value = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 80 }),
      fc.string({ unit: fc.constantFrom(...'ab.-@%/\\?#[]"\r\n\t \u0000\u00ad\u200b\ud800ü1'), maxLength: 40 }),
      fc.constantFrom('a@b.test', 'x@one.test', '2025-02-30T00:00:00Z', '9223372036854775808', '-1', ''),
    );
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...operations), value, async (query, v) => {
        const answer = await gql(api, admin, query, { v });
        expect(answer.status, `${query} ${JSON.stringify(v)}`).toBeLessThan(500);
        const codes = (answer.body.errors ?? []).map((error) => error.extensions?.code);
        expect(codes, `${query} ${JSON.stringify(v)}: ${JSON.stringify(answer.body.errors)}`).not.toContain('INTERNAL_SERVER_ERROR');
      }),
      { numRuns: 400 },
    );
  });
});
