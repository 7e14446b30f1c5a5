// Direct delivery (MAIL_SMTP_MODE=mx) reusing an idle connection the MX host closed: the raw-socket
// relay (../core/helpers/raw-relay.py) as the one MX host of a domain (dnsmasq), closing the session
// after its 250 to the data — at once, after half a second idle, or once it has answered the next
// RSET. Each case sends a message that leaves the connection idle in the site's pool, then the next
// message to the same site, which takes that connection.
// What was wrong before (the engine at a limit of one connection to the site):
// - a connection that answered RSET and then closed failed the next message with nothing sent
//   ("ECONNECTION: Cannot send message - smtp connection is already destroyed."): a transport_failed
//   attempt, and the delivery waited for the ladder's next step (here an hour);
// - a connection closed while idle gave its slot back, and the next message's claim overtook that
//   release: "deferred: site ... has no free connection (at most 1)", sent only after
//   MAIL_SHAPING_DEFER.
// Each next message now goes at once on a fresh connection on the site's one slot: one attempt,
// received once.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import { siteKey } from '../../apps/core/src/relay/site-key.ts';
import { attemptsOf, deliveryRow, insertAcceptedMessage, startTestEngine, waitForStatus } from '../core/helpers/engine.ts';
import { messageIdOf, type RawRelay, startRawRelay } from '../core/helpers/raw-relay.ts';
import { type DnsServer, startDnsmasq } from '../harness/dnsmasq.ts';
import { createTestDatabase, type TestDatabase, waitFor } from '../harness/index.ts';

let db: TestDatabase;
let dns: DnsServer;
let relay: RawRelay;
let engine: Engine;

beforeAll(async () => {
  db = await createTestDatabase('mx-reused-connection');
  relay = await startRawRelay();
  dns = await startDnsmasq({ mx: [['reuse.mx.test', 'mx.reuse.mx.test', 10]], hosts: [['mx.reuse.mx.test', relay.host]] });
  engine = await startTestEngine(db.dsn, {
    MAIL_SMTP_MODE: 'mx',
    MAIL_MX_PORT: String(relay.port),
    // The MX host is on a loopback address: allowed, as in a private network.
    MAIL_MX_PRIVATE_ADDRESSES: 'allow',
    MAIL_DNS_SERVERS: dns.server,
    MAIL_MTA_HOSTNAME: 'postern.reuse.test',
    // Longer than any case: the connection a case leaves is still pooled when its next message comes.
    MAIL_SHAPING_IDLE_TIMEOUT: '30s',
    // One connection at a time: the new one must take the closed one's slot.
    MAIL_SHAPING_MAX_CONNECTIONS: '1',
    // One attempt per message: a failed one would wait an hour.
    MAIL_RETRY_LADDER: '1h',
  });
});

afterAll(async () => {
  await engine?.stop();
  await dns?.close();
  await relay?.close();
  await db?.drop();
});

/** A message the edge accepted for the raw relay's rule, as raw-relay.e2e does. */
const queue = async (rule: string, n: number) => (await insertAcceptedMessage(db.pool, `sender-${rule}-${n}@outside.test`, `${rule}-${n}@reuse.mx.test`)).deliveryId;

describe('the next message on a connection the MX host closed while it was idle', () => {
  it.each([
    // Closed right after its 250 to the data (what raw-relay.e2e's dotokclose does in smtp mode).
    ['dotokclose'],
    // Closed after half a second idle: the RSET sent meanwhile is never answered.
    ['dotidleclose'],
    // Answers the RSET that proves the connection alive, then closes: MAIL FROM meets a closed socket.
    ['dotrsetclose'],
  ])('%s: goes at once on a fresh connection, one attempt, received once', async (rule) => {
    const first = await queue(rule, 1);
    await waitForStatus(db.pool, first, 'sent', 30_000);
    const before = await relay.stats();
    const next = await queue(`after-${rule}`, 2);
    // Its first attempt's outcome, whatever it is (a failed one would be retried only in an hour).
    const row = await waitFor(`delivery ${next} attempted`, () => deliveryRow(db.pool, next), (current) => ['sent', 'retrying', 'failed'].includes(current?.status ?? ''), { timeoutMs: 30_000, intervalMs: 100 });
    expect({ status: row?.status, attempts: await attemptsOf(db.pool, next) }).toMatchObject({ status: 'sent', attempts: [{ attempt_number: 1, status: 'sent', smtp_code: 250 }] });
    const after = await relay.stats();
    expect(after.received[await messageIdOf(db.pool, next)]).toBe(1);
    // The message went on a connection of its own (the closed one carried nothing of it).
    expect(after.connections).toBe(before.connections + 1);
    // Which holds the site's one slot, idle in the pool: none leaked, none more.
    const slots = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM mail.site_slots WHERE site = $1 AND expires_at > now()', [siteKey(['mx.reuse.mx.test'])]);
    expect(slots.rows[0]?.n).toBe(1);
  }, 90_000);
});
