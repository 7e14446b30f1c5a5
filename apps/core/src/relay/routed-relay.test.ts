import { randomBytes } from 'node:crypto';
import { chooseRoute, createLogger, openRoutePassword, type RouteAuth, type RouteRule, type RouteTlsPolicy, type SecretsKey, sealRoutePassword, secretsKeyOf } from '@postern/shared';
import { describe, expect, it } from 'vitest';
import type { OutboundMessage, Relay, SendResult } from './relay.ts';
import type { RouteTable } from './route-table.ts';
import { createRoutedRelay } from './routed-relay.ts';

function fakeRelay(name: string, result: SendResult = { ok: true, reply: { code: 250, enhanced: '2.0.0', text: `ok from ${name}` } }) {
  const sent: string[] = [];
  let closed = false;
  const relay: Relay = {
    name,
    async send(message: OutboundMessage) {
      sent.push(message.recipient);
      return result;
    },
    interrupt() {},
    async close() {
      closed = true;
    },
  };
  return { relay, sent, closed: () => closed };
}

const message = (recipient: string): OutboundMessage => ({ deliveryId: 'd', envelopeFrom: 'a@b.test', recipient, raw: Buffer.from('x') });

const secretsKey = secretsKeyOf(randomBytes(32));

function routed(rules: Record<string, RouteRule>, fallbackResult?: SendResult, engineKey: SecretsKey | null = secretsKey) {
  const fallback = fakeRelay('smtp://default.example.net:25', fallbackResult);
  const direct = fakeRelay('mx');
  const hosts = new Map<string, ReturnType<typeof fakeRelay>>();
  const credentials: Array<RouteAuth | null> = [];
  const routes: RouteTable = {
    lookup: async (domain) => {
      if (domain === 'broken.test') throw new Error('the database is away');
      return chooseRoute(domain, Object.values(rules));
    },
  };
  const relay = createRoutedRelay({
    fallback: fallback.relay,
    fallbackChoice: { relay: 'default.example.net:25', tls: null },
    routes,
    direct: () => direct.relay,
    relayTo: (host: string, port: number, tls: RouteTlsPolicy, auth: RouteAuth | null) => {
      const made = fakeRelay(`smtp://${host}:${port}`);
      hosts.set(`${host}:${port} ${tls}${auth ? ` ${auth.username}` : ''}`, made);
      credentials.push(auth);
      return made.relay;
    },
    openPassword: (routeDomain, auth) => openRoutePassword(engineKey, routeDomain, auth),
    logger: createLogger('routed-relay-test', 'silent'),
  });
  return { relay, fallback, direct, hosts, credentials };
}

/** toTickets with credentials, sealed as setRoute seals them. */
function withAuth(username: string, password: string, key: SecretsKey = secretsKey): RouteRule {
  return { ...toTickets, auth: { username, passwordSealed: sealRoutePassword(key, toTickets.domain, username, password) } };
}

const toTickets: RouteRule = { domain: 'tickets.example.com', relay: { kind: 'host', host: 'tickets.internal.test', port: 2525 }, tls: 'required' };
const toMx: RouteRule = { domain: '.direct.test', relay: { kind: 'mx' }, tls: 'opportunistic' };

describe('the routed relay', () => {
  it('sends a routed domain to its relay host, others to the default, and says which route each took', async () => {
    const { relay, fallback, hosts } = routed({ 'tickets.example.com': toTickets });
    const routedResult = await relay.send(message('help@Tickets.Example.com'));
    const plain = await relay.send(message('bob@elsewhere.test'));
    expect(hosts.get('tickets.internal.test:2525 required')?.sent).toEqual(['help@Tickets.Example.com']);
    expect(fallback.sent).toEqual(['bob@elsewhere.test']);
    expect(routedResult).toMatchObject({ ok: true, choice: { domain: 'tickets.example.com', relay: 'tickets.internal.test:2525', tls: 'required' } });
    expect(plain).toMatchObject({ ok: true, choice: { domain: null, relay: 'default.example.net:25', tls: null } });
  });

  it('reuses one relay per host, port and TLS requirement', async () => {
    const { relay, hosts } = routed({ 'tickets.example.com': toTickets });
    await relay.send(message('a@tickets.example.com'));
    await relay.send(message('b@tickets.example.com'));
    expect(hosts.size).toBe(1);
    expect(hosts.get('tickets.internal.test:2525 required')?.sent).toHaveLength(2);
  });

  it('an "mx" route delivers directly, even when the default is a relay', async () => {
    const { relay, direct, fallback } = routed({ '.direct.test': toMx });
    const result = await relay.send(message('x@a.direct.test'));
    expect(direct.sent).toEqual(['x@a.direct.test']);
    expect(fallback.sent).toEqual([]);
    expect(result).toMatchObject({ choice: { domain: '.direct.test', relay: 'mx', tls: 'opportunistic' } });
  });

  it('a failure carries the route too', async () => {
    const refused: SendResult = { ok: false, failure: { kind: 'connection', reply: null, dataSent: false, interrupted: false, message: 'ECONNECTION: refused' } };
    const { relay } = routed({}, refused);
    expect(await relay.send(message('a@elsewhere.test'))).toMatchObject({ ok: false, failure: { kind: 'connection', choice: { domain: null } } });
  });

  it('a route table that cannot be read defers the send: nothing is sent, the failure is temporary', async () => {
    const { relay, fallback } = routed({});
    const result = await relay.send(message('a@broken.test'));
    expect(fallback.sent).toEqual([]);
    expect(result).toMatchObject({ ok: false, failure: { kind: 'other', dataSent: false, message: expect.stringContaining('route table unavailable') } });
  });

  it("a route with credentials gets a relay that authenticates with them, and a new one when they change", async () => {
    const rules = { 'tickets.example.com': withAuth('postern', 'first secret') };
    const { relay, hosts, credentials } = routed(rules);
    await relay.send(message('a@tickets.example.com'));
    await relay.send(message('b@tickets.example.com'));
    expect(credentials).toEqual([{ username: 'postern', password: 'first secret' }]);
    rules['tickets.example.com'] = withAuth('postern', 'second secret');
    await relay.send(message('c@tickets.example.com'));
    expect(credentials).toEqual([
      { username: 'postern', password: 'first secret' },
      { username: 'postern', password: 'second secret' },
    ]);
    expect(hosts.get('tickets.internal.test:2525 required postern')?.sent).toEqual(['c@tickets.example.com']);
  });

  it('credentials that cannot be opened (no MAIL_SECRETS_KEY, another key) defer the send: nothing is sent, no relay is made', async () => {
    for (const engineKey of [null, secretsKeyOf(randomBytes(32))]) {
      const { relay, hosts, fallback } = routed({ 'tickets.example.com': withAuth('postern', 'secret') }, undefined, engineKey);
      const result = await relay.send(message('a@tickets.example.com'));
      expect(hosts.size).toBe(0);
      expect(fallback.sent).toEqual([]);
      expect(result).toMatchObject({
        ok: false,
        failure: { kind: 'other', dataSent: false, message: expect.stringContaining('the credentials of the route for tickets.example.com cannot be opened with MAIL_SECRETS_KEY') },
      });
      expect(JSON.stringify(result)).not.toContain('secret"');
    }
  });

  it('unopenable credentials are logged as an error once a minute per route, the sends between at debug', async () => {
    const lines: Array<{ level: number; route: string }> = [];
    let clock = 0;
    const relay = createRoutedRelay({
      fallback: fakeRelay('mx').relay,
      fallbackChoice: { relay: 'mx', tls: 'opportunistic' },
      routes: { lookup: async () => withAuth('postern', 'secret') },
      direct: () => fakeRelay('mx').relay,
      relayTo: () => fakeRelay('smtp://tickets.internal.test:2525').relay,
      openPassword: (routeDomain, auth) => openRoutePassword(null, routeDomain, auth),
      logger: createLogger('routed-relay-test', 'debug', { destination: { write: (line: string) => lines.push(JSON.parse(line)) } }),
      now: () => clock,
    });
    for (const at of [0, 1_000, 59_000, 60_000, 61_000]) {
      clock = at;
      await relay.send(message('a@tickets.example.com'));
    }
    const about = lines.filter((line) => line.route === 'tickets.example.com');
    expect(about.map((line) => line.level)).toEqual([50, 20, 20, 50, 20]);
  });

  it('closing closes every relay it made', async () => {
    const { relay, fallback, direct, hosts } = routed({ 'tickets.example.com': toTickets, '.direct.test': toMx });
    await relay.send(message('a@tickets.example.com'));
    await relay.send(message('a@b.direct.test'));
    await relay.close();
    expect([fallback.closed(), direct.closed(), hosts.get('tickets.internal.test:2525 required')?.closed()]).toEqual([true, true, true]);
  });
});

describe('a routed relay host that refuses the session', () => {
  it('is deferred (a connection failure), not a refusal of the recipient; the reply stays in the text', async () => {
    const refusal: SendResult = {
      ok: false,
      failure: { kind: 'reply', reply: { code: 554, enhanced: '5.7.1', text: 'go away' }, dataSent: false, interrupted: false, message: 'EPROTOCOL: Invalid greeting. response=554 5.7.1 go away', inSetup: true },
    };
    const relay = createRoutedRelay({
      fallback: fakeRelay('mx').relay,
      fallbackChoice: { relay: 'mx', tls: 'opportunistic' },
      routes: { lookup: async () => toTickets },
      direct: () => fakeRelay('mx').relay,
      relayTo: () => fakeRelay('smtp://tickets.internal.test:2525', refusal).relay,
      openPassword: () => '',
      logger: createLogger('routed-relay-test', 'silent'),
    });
    const result = await relay.send(message('a@tickets.example.com'));
    expect(result).toMatchObject({ ok: false, failure: { kind: 'connection', reply: null, message: expect.stringContaining('554 5.7.1 go away') } });
  });

  it("is deferred alike when it is MAIL_SMTP_ADDR's relay (no route)", async () => {
    const refusal: SendResult = {
      ok: false,
      failure: { kind: 'reply', reply: { code: 550, enhanced: '5.7.1', text: 'no HELO for you' }, dataSent: false, interrupted: false, message: 'EPROTOCOL: 550 5.7.1 no HELO for you', inSetup: true },
    };
    const relay = createRoutedRelay({
      fallback: fakeRelay('smtp://relay.internal.test:25', refusal).relay,
      fallbackChoice: { relay: 'relay.internal.test:25', tls: null },
      routes: { lookup: async () => null },
      direct: () => fakeRelay('mx').relay,
      relayTo: () => fakeRelay('unused').relay,
      openPassword: () => '',
      logger: createLogger('routed-relay-test', 'silent'),
    });
    const result = await relay.send(message('a@anywhere.example.com'));
    expect(result).toMatchObject({ ok: false, failure: { kind: 'connection', reply: null, message: expect.stringContaining('550 5.7.1 no HELO for you'), choice: { domain: null } } });
  });
});
