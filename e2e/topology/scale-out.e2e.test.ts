// The Postern image in the topology operators run (compose.yaml): two edges, two engines and the
// API as separate containers on one Docker network with PostgreSQL, Redis and an SMTP sink. What
// docs/deploy.md promises about scaling out, proven against the real image and counted at the sink
// with the fault matrix's account (e2e/faults/helpers/account.ts):
// - mail sent to both edges and commands on the stream are each delivered exactly once;
// - an alias created through the API is accepted by both edges on the next RCPT;
// - the edges restarted one after the other while a sender keeps sending: none lost, none refused;
// - an engine container killed with leases held: the other finishes that work after the lease;
// - `docker stop` ends every container cleanly within MAIL_SHUTDOWN_TIMEOUT.
// The tests run in this order on one topology; each sends to an alias of its own.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gqlData } from '../api/helpers/api.ts';
import { type AccountRequest, takeAccount, violations } from '../faults/helpers/account.ts';
import { cellSize, FAULT_DOMAIN, startTraffic } from '../faults/helpers/cell.ts';
import { metricSum } from '../faults/helpers/engine-facts.ts';
import { faultMessage, type SendRecord, sendAll } from '../faults/helpers/smtp-sender.ts';
import { pauseContainer, waitFor } from '../harness/index.ts';
import { SmtpTestClient } from '../mta/helpers/smtp-client.ts';
import { ensurePosternImage } from './helpers/image.ts';
import { sinkCounts } from './helpers/sink-counts.ts';
import {
  bothEdges,
  createToken,
  docker,
  dockerStop,
  healthOf,
  type Service,
  startAgain,
  startTopology,
  type Topology,
} from './helpers/topology.ts';

let topology: Topology;
let token: string;

beforeAll(async () => {
  topology = await startTopology(await ensurePosternImage());
  token = await createToken(topology, 'topology');
  await graphql(`mutation { createDomain(name: "${FAULT_DOMAIN}") { __typename } }`);
}, 900_000);

afterAll(async () => {
  await topology?.stop();
}, 120_000);

// biome-ignore lint/suspicious/noExplicitAny: the answers are read loosely; a mismatch fails the expect.
function graphql(query: string, variables: Record<string, unknown> = {}): Promise<Record<string, any>> {
  return gqlData(`${topology.api.httpUrl()}/graphql`, token, query, variables);
}

/** The cell's alias, created through the API: <cell>@fault.test forwards to <cell>@sink.test. */
async function cellAlias(cell: string): Promise<string> {
  const data = await graphql(
    'mutation($input: CreateAliasInput!) { createAlias(input: $input) { __typename ... on ValidationError { message } } }',
    { input: { domain: FAULT_DOMAIN, localPart: cell, targets: [`${cell}@sink.test`] } },
  );
  expect(data.createAlias).toEqual({ __typename: 'CreateAliasSuccess' });
  return `${cell}@${FAULT_DOMAIN}`;
}

function account(cell: string, request: Omit<AccountRequest, 'cell' | 'pool' | 'sink'>) {
  return { cell, pool: topology.pool, sink: sinkCounts(topology.sinkApiUrl), ...request };
}

async function rcptOn(edge: Service, address: string): Promise<string> {
  const { client, greeting } = await SmtpTestClient.connect(edge.smtpPort());
  try {
    expect(greeting.code).toBe(220);
    expect((await client.command('EHLO client.outside.test')).code).toBe(250);
    expect((await client.command('MAIL FROM:<sender@outside.test>')).code).toBe(250);
    return (await client.command(`RCPT TO:<${address}>`)).raw;
  } finally {
    await client.quit().catch(() => {});
  }
}

async function metric(service: Service, name: string): Promise<number> {
  return metricSum(await (await fetch(`${service.httpUrl()}/metrics`)).text(), name);
}

const accepted = (records: SendRecord[]) => records.filter((record) => record.final?.startsWith('250')).length;

describe('the Postern image, scaled out: two edges, two engines, the API', () => {
  it('an alias created through the API is accepted by both edges on the next RCPT', async () => {
    const address = 'new-team@fault.test';
    for (const edge of topology.edges) expect(await rcptOn(edge, address)).toMatch(/^550 5\.1\.1 /);
    await cellAlias('new-team');
    for (const edge of topology.edges) expect(await rcptOn(edge, address)).toMatch(/^250 /);
  });

  it('the edges in the image, started as `postern mta` without --expose-gc, have V8\'s gc() for the drain path', async () => {
    // The image's ENTRYPOINT is plain node: the edge gets gc() itself (drained-memory.ts) and warns
    // with "collector":"unavailable" only when it cannot. Before it did, every container's edge
    // went without gc() and said so at start.
    for (const edge of topology.edges) {
      const logs = await edge.logs();
      expect(logs, edge.name).toContain('"msg":"mta started"');
      expect(logs, edge.name).not.toContain('"collector":"unavailable"');
    }
  });

  it('mail sent to both edges and commands on the stream are each delivered exactly once', async () => {
    const cell = 'topology-exactly-once';
    const n = cellSize(60);
    const rcpt = await cellAlias(cell);
    const startedAt = Date.now();
    const { sent, produced } = await startTraffic({ cell, n, rcpt, redis: { client: topology.redisClient } }, { sender: { port: bothEdges(topology), concurrency: 4 } }).done;
    const request = account(cell, {
      sent,
      produced,
      faultEndedAt: startedAt,
      settleMs: 90_000,
      duplicateBound: 'zero',
      note: 'image topology: SMTP over both edges in turn, stream read by both engines; time counted from the first input',
    });
    const result = await takeAccount(request);
    expect(violations(result, request)).toEqual([]);
    expect(result.delivered).toBe(2 * n);
    // Both edges took mail, and both engines sent it.
    for (const edge of topology.edges) expect(await metric(edge, 'mail_mta_messages_accepted_total'), edge.name).toBeGreaterThan(0);
    for (const engine of topology.engines) expect(await metric(engine, 'mail_attempt_outcomes_total'), engine.name).toBeGreaterThan(0);
  }, 240_000);

  it('the edges restarted one after the other while a sender keeps sending: none lost, none refused', async () => {
    const cell = 'topology-edges-restarted';
    const rcpt = await cellAlias(cell);
    const sent: SendRecord[] = [];
    let restarting = true;
    // An MTA's queue runner: four messages at a time, each retried on 4xx or a refused connection
    // (on the next edge, as with two MX hosts), until the restarts are over.
    const sender = (async () => {
      for (let batch = 0; restarting; batch++) {
        const messages = Array.from({ length: 4 }, (_, i) => faultMessage(cell, batch * 4 + i, rcpt));
        sent.push(...(await sendAll(messages, { port: bothEdges(topology), concurrency: 2, deadlineMs: 120_000, retryDelayMs: 200 })));
      }
    })();
    const startedAt = Date.now();
    try {
      await waitFor('the sender to get mail accepted', () => accepted(sent), (count) => count >= 8, { timeoutMs: 60_000 });
      for (const edge of topology.edges) {
        const before = accepted(sent);
        const stop = await dockerStop(edge);
        // Exit code 0 is a stop that finished within MAIL_SHUTDOWN_TIMEOUT: past it the process exits
        // with 1 (run-service.ts), and docker's SIGKILL after its grace gives 137. How long `docker
        // stop` took on the wall clock is not asserted: on a loaded machine docker itself takes seconds.
        expect(stop, `${edge.name} stopped by SIGTERM in ${stop.ms} ms`).toMatchObject({ exitCode: 0, oomKilled: false });
        await startAgain(edge);
        // The sender went on through the other edge while this one was away.
        await waitFor(`mail accepted across the restart of ${edge.name}`, () => accepted(sent), (count) => count > before + 4, { timeoutMs: 60_000 });
      }
    } finally {
      restarting = false;
      await sender;
    }
    const refused = sent.filter((record) => record.final === null || !record.final.startsWith('250'));
    expect(refused.map((record) => `${record.token}: ${record.final}`)).toEqual([]);
    const request = account(cell, {
      sent,
      produced: [],
      faultEndedAt: startedAt,
      settleMs: 90_000,
      duplicateBound: 'zero',
      note: `image topology: both edges restarted in turn (docker stop, start) under a sender retrying on 4xx; ${sent.length} messages`,
    });
    const result = await takeAccount(request);
    expect(violations(result, request)).toEqual([]);
    expect(result.delivered).toBe(sent.length);
    // A stopping edge answers what it committed: no transaction was left without a reply.
    expect(sent.reduce((sum, record) => sum + record.unanswered, 0)).toBe(0);
  }, 300_000);

  it('an engine container killed with leases held: the other finishes that work after the lease, none lost', async () => {
    const cell = 'topology-engine-killed';
    const n = cellSize(100);
    const rcpt = await cellAlias(cell);
    const [victim, survivor] = topology.engines;
    const heldBy = async (service: Service) =>
      (
        await topology.pool.query<{ id: string }>("SELECT id FROM mail.deliveries WHERE status = 'sending' AND locked_by LIKE $1", [
          `core:${service.name}:%`,
        ])
      ).rows.map((row) => row.id);
    const traffic = startTraffic({ cell, n, rcpt, redis: { client: topology.redisClient } }, { sender: { port: bothEdges(topology), concurrency: 4 }, paceMs: 5 });
    // Statements the victim had sent before it was frozen still run in PostgreSQL (an outcome's
    // commit finishes and marks its delivery sent); what it holds is read once none is running.
    const victimAddress = (await docker('inspect', '--format', '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}', victim.container.getId()))
      .trim()
      .split(' ');
    const statementsRunning = async () =>
      (
        await topology.pool.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'postern-core' AND state = 'active' AND host(client_addr) = ANY($1::text[])",
          [victimAddress],
        )
      ).rows[0]?.n ?? 0;
    // Frozen (docker pause) the moment it is seen holding leases, so what it holds cannot change
    // before the kill; if it finished them in between, it is let go and watched again.
    const orphaned = await waitFor(
      `${victim.name} frozen with leased deliveries`,
      async () => {
        if ((await heldBy(victim)).length === 0) return [];
        await pauseContainer(victim.container.getId());
        await waitFor(`${victim.name}'s statements under way to end`, statementsRunning, (n) => n === 0, { timeoutMs: 15_000, intervalMs: 20 });
        const held = await heldBy(victim);
        if (held.length === 0) await docker('unpause', victim.container.getId());
        return held;
      },
      (held) => held.length > 0,
      { timeoutMs: 90_000, intervalMs: 20 },
    );
    await docker('kill', victim.container.getId());
    const faultEndedAt = Date.now();
    const { sent, produced } = await traffic.done;
    const request = account(cell, {
      sent,
      produced,
      faultEndedAt,
      settleMs: 150_000,
      duplicateBound: 'outcome-unknown',
      note: `image topology: ${victim.name} SIGKILLed holding ${orphaned.length} leased deliveries; ${survivor.name} alone; lease 20 s`,
    });
    const result = await takeAccount(request);
    expect(violations(result, request)).toEqual([]);
    expect(result.delivered).toBe(2 * n);
    // What the dead engine held was taken back once its leases ran out, and sent by the survivor.
    const { rows } = await topology.pool.query<{ status: string; n: number }>(
      'SELECT status, count(*)::int AS n FROM mail.deliveries WHERE id = ANY($1::uuid[]) GROUP BY status',
      [orphaned],
    );
    expect(rows).toEqual([{ status: 'sent', n: orphaned.length }]);
    expect(await metric(survivor, 'mail_attempt_leases_reclaimed_total')).toBeGreaterThanOrEqual(orphaned.length);
    await startAgain(victim);
  }, 360_000);

  it('docker stop ends every Postern container cleanly within MAIL_SHUTDOWN_TIMEOUT, after its HEALTHCHECK said healthy', async () => {
    const services = topology.services();
    // All at once: each probe is a node process started in the container (5 s to answer), so on a
    // loaded machine a container may take a few probes, 15 s apart, to say healthy.
    await Promise.all(
      services.map((service) =>
        waitFor(`${service.name}'s HEALTHCHECK to say healthy`, () => healthOf(service), (health) => health.status === 'healthy', {
          timeoutMs: 180_000,
          intervalMs: 1_000,
        }).catch(async (error: Error) => {
          const lines = (await service.logs().catch((failure: Error) => failure.message)).trimEnd().split('\n');
          throw new Error(`${error.message}\n${service.name}'s last log lines:\n${lines.slice(-25).join('\n')}`);
        }),
      ),
    );
    const sinceS = Math.floor(Date.now() / 1000);
    const stops = await Promise.all(services.map((service) => dockerStop(service)));
    expect(stops.map(({ name, exitCode, oomKilled }) => ({ name, exitCode, oomKilled }))).toEqual(
      services.map((service) => ({ name: service.name, exitCode: 0, oomKilled: false })),
    );
    // Within MAIL_SHUTDOWN_TIMEOUT: exit code 0 and the process's own "stopped" line (past its deadline
    // it exits with 1 and logs "shutdown deadline passed"), not the wall clock of `docker stop`.
    for (const service of services) {
      const stop = stops.find((entry) => entry.name === service.name);
      expect(await service.logs(sinceS), `${service.name} (docker stop took ${stop?.ms} ms)`).toContain(`"msg":"${service.command} stopped"`);
    }
  }, 300_000);
});
