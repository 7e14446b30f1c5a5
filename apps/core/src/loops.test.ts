import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ClaimedDelivery, createLogger, createMetricsRegistry, loadConfig, loadTemplateCatalog, type OutcomeToRecord, type Pool } from '@postern/shared';
import { afterEach, describe, expect, it } from 'vitest';
import { defaultReplyRules } from './delivery/classify-reply.ts';
import { retryLadder } from './delivery/retry-ladder.ts';
import { EngineEvents } from './engine-events.ts';
import { startLoops } from './loops.ts';
import { createEngineMetrics } from './metrics.ts';
import { LiveLeases } from './queue/live-leases.ts';
import { WorkChannel } from './queue/work-channel.ts';
import type { OutboundMessage, Relay } from './relay/relay.ts';

const templateDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../templates');
const logger = createLogger('test', 'silent');

async function until(check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

function rendered(id: string): ClaimedDelivery {
  return {
    id, source: 'billing', payload_mode: 'rendered', message_id: null, template_id: null, template_locale: null, template_hash: null,
    template_variables: null, subject: 'Invoice', text_body: 'Due.', html_body: null, category: null, recipient: 'bob@inbox.test',
    envelope_from: '', rfc_message_id: `<${id}@postern.test>`, attempt_count: 1, created_at: new Date(),
    queued_since: new Date(), queued_ms: 0, claimed_at_ms: performance.now(), suppressed_reason: null, smtputf8: null, body_type: null, traceparent: null, dkim_keys_generation: '1',
  };
}

const stops: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const stop of stops.splice(0)) await stop();
});

/** One attempt worker (concurrency 1) around a relay that answers 250 at once and a completion
 *  batcher whose commits finish only when the test says so. */
function startOneWorker() {
  const config = loadConfig(
    {
      MAIL_POSTGRES_PRIMARY_DSN: 'postgres://unused@127.0.0.1:1/unused',
      MAIL_INTERNAL_HTTP_ADDR: '127.0.0.1:0',
      MAIL_TEMPLATE_DIR: templateDir,
      MAIL_SMTP_MODE: 'smtp',
      MAIL_SMTP_ADDR: 'relay.test:25',
      MAIL_SMTP_FROM: 'postern@postern.test',
      MAIL_ATTEMPT_WORKER_CONCURRENCY: '1',
    },
    'core',
  );
  const channel = new WorkChannel();
  const leases = new LiveLeases();
  const sent: OutboundMessage[] = [];
  const relay: Relay = {
    name: 'smtp://relay.test:25',
    async send(message) {
      sent.push(message);
      return { ok: true, reply: { code: 250, enhanced: '2.0.0', text: 'ok' } };
    },
    interrupt() {},
    async close() {},
  };
  const commits: Array<{ outcome: OutcomeToRecord; commit: () => void }> = [];
  const metrics = createEngineMetrics(createMetricsRegistry('core'), { loops: () => [] });
  const pool = { query: async () => ({ rows: [] }) } as unknown as Pool;
  const running = startLoops({
    config,
    pool,
    lifecycle: { renewLeases: async () => 0, release: async () => 0 } as never,
    channel,
    scheduler: { body: async ({ signal }) => void (await new Promise((resolve) => signal.addEventListener('abort', resolve))) },
    consumer: null,
    maintenance: null,
    attempt: {
      payloads: { hold: async () => null },
      completions: {
        record: (outcome) => new Promise<boolean>((resolve) => commits.push({ outcome, commit: () => resolve(true) })),
      },
      relay,
      catalog: loadTemplateCatalog(templateDir),
      ladder: retryLadder([1_000]),
      queueLifetimeMs: 120 * 3_600_000,
      rules: defaultReplyRules(),
      workerId: 'core:test',
      mode: 'smtp',
      sender: 'postern@postern.test',
      reportingMta: 'mx.postern.test',
      metrics,
      logger,
    },
    leases,
    workerId: 'core:test',
    events: new EngineEvents(logger),
    logger,
  });
  const stop = () => running.stop(5_000, relay);
  stops.push(stop);
  return { channel, leases, sent, commits, stop };
}

describe('attempt workers', () => {
  it('send the next delivery while the commit of their last outcome is under way, two outcomes uncommitted at most', async () => {
    const w = startOneWorker();
    for (const id of ['d1', 'd2', 'd3']) {
      w.leases.hold({ id, attemptNumber: 1 });
      w.channel.push([rendered(id)]);
    }
    await until(() => w.commits.length === 2);
    expect(w.sent.map((message) => message.deliveryId)).toEqual(['d1', 'd2']);
    // The slot is free again, but a third send waits for the first commit.
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(w.sent).toHaveLength(2);
    expect(w.channel.waiting).toBe(1);
    w.commits[0]?.commit();
    await until(() => w.sent.length === 3);
    // A lease is held until its outcome is committed, not just handed over.
    expect(w.leases.size).toBe(2);
    for (const pending of w.commits) pending.commit();
    await until(() => w.leases.size === 0);
  });

  it('the ordered stop waits for outcomes handed over and not yet committed', async () => {
    const w = startOneWorker();
    w.leases.hold({ id: 'd1', attemptNumber: 1 });
    w.channel.push([rendered('d1')]);
    await until(() => w.commits.length === 1);
    let stopped = false;
    const stopping = w.stop().then(() => {
      stopped = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(stopped).toBe(false);
    w.commits[0]?.commit();
    await stopping;
    expect(w.leases.size).toBe(0);
  });
});
