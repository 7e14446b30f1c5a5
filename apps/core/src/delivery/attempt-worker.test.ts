import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ClaimedDelivery, createLogger, createMetricsRegistry, loadTemplateCatalog } from '@postern/shared';
import { describe, expect, it } from 'vitest';
import { createEngineMetrics } from '../metrics.ts';
import type { OutboundMessage, Relay, SendFailure, SendResult } from '../relay/relay.ts';
import { createFakeLifecycle, type FakeLifecycle, pgError } from '../testing/fake-lifecycle.ts';
import { type AttemptDeps, attemptDelivery } from './attempt-worker.ts';
import { defaultReplyRules } from './classify-reply.ts';
import { SigningUnavailable } from './dkim-signer.ts';
import { createPayloadHolds } from './payload-holds.ts';
import { retryLadder } from './retry-ladder.ts';

const catalog = loadTemplateCatalog(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../templates'));
const logger = createLogger('test', 'silent');
const received = new Date('2025-01-01T00:00:00Z');
const original = Buffer.from('Subject: Quarterly report\r\nFrom: alice@outside.test\r\n\r\nbody\r\n');

/** Mail the edge accepted from alice@outside.test: relayed as received, bounced if it fails for good. */
function accepted(fields: Partial<ClaimedDelivery> = {}): ClaimedDelivery {
  // Its time in the queue as the claim measures it (PostgreSQL's clock), from the queued_since given.
  const queuedMs = fields.queued_since ? Date.now() - fields.queued_since.getTime() : 0;
  return {
    id: 'd1', source: 'smtp', payload_mode: 'relay', message_id: 'm1', template_id: null, template_locale: null, template_hash: null,
    template_variables: null, subject: null, text_body: null, html_body: null, category: null, recipient: 'bob@inbox.test',
    envelope_from: 'alice@outside.test', rfc_message_id: '<m1@outside.test>', attempt_count: 1, created_at: received,
    // Queued just now: far from the end of its queue lifetime unless a test says otherwise.
    queued_since: new Date(), queued_ms: queuedMs, claimed_at_ms: performance.now(), suppressed_reason: null, smtputf8: null, body_type: null,
    traceparent: null, dkim_keys_generation: '1', ...fields,
  };
}

/** A command of an internal producer with its content given: never bounced. */
function rendered(fields: Partial<ClaimedDelivery> = {}): ClaimedDelivery {
  return accepted({ source: 'billing', payload_mode: 'rendered', message_id: null, subject: 'Invoice', text_body: 'Due.', envelope_from: '', ...fields });
}

/** A relay that answers every send with `result`, and remembers what it was given. */
function scriptedRelay(result: SendResult): Relay & { sent: OutboundMessage[] } {
  const sent: OutboundMessage[] = [];
  return {
    name: 'smtp://relay.test:25',
    sent,
    async send(message) {
      sent.push(message);
      return result;
    },
    interrupt() {},
    async close() {},
  };
}

const HOUR = 3_600_000;
/** MAIL_QUEUE_LIFETIME's default. */
const LIFETIME_MS = 120 * HOUR;
/** Queued `hours` ago. */
const queuedHoursAgo = (hours: number) => new Date(Date.now() - hours * HOUR);

const replyOk = (text = 'queued as X'): SendResult => ({ ok: true, reply: { code: 250, enhanced: '2.0.0', text } });
function refused(code: number, enhanced: string | null, text: string, fields: Partial<SendFailure> = {}): SendResult {
  return { ok: false, failure: { kind: 'reply', reply: { code, enhanced, text }, dataSent: false, message: text, interrupted: false, ...fields } };
}

/** One attempt of `delivery` on a fake lifecycle; what reached the lifecycle. Each outcome is recorded
 *  alone, as a batch of one (the completion batcher has its own tests). */
async function attempt(delivery: ClaimedDelivery, result: SendResult, setup: (lifecycle: FakeLifecycle) => void = () => {}, deps: Partial<AttemptDeps> = {}) {
  const lifecycle = createFakeLifecycle();
  lifecycle.payloads.set('m1', { raw: original, receivedAt: received, envelopeTo: ['list@alias.test'] });
  setup(lifecycle);
  const relay = scriptedRelay(result);
  const registry = createMetricsRegistry('core');
  const metrics = createEngineMetrics(registry, { loops: () => [] });
  await attemptDelivery(
    {
      payloads: createPayloadHolds({ load: (messageId, read) => lifecycle.loadPayload(messageId, read), budgetBytes: 1024 * 1024 }),
      completions: { record: async (outcome) => (await lifecycle.recordOutcomes('core:test', [outcome])).recorded.has(outcome.deliveryId) },
      relay,
      catalog,
      // Three attempts in all: waits of 1 s and 2 s between them.
      ladder: retryLadder([1_000, 2_000]),
      queueLifetimeMs: LIFETIME_MS,
      rules: defaultReplyRules(),
      workerId: 'core:test',
      mode: 'smtp',
      sender: 'postern@postern.test',
      reportingMta: 'mx.postern.test',
      metrics,
      logger,
      ...deps,
    },
    delivery,
    () => {},
  );
  const recorded = lifecycle.batches.at(-1)?.[0];
  return { lifecycle, relay, recorded, metrics: await registry.getMetricsAsJSON() };
}

describe('attempt worker: the outcome of each kind of relay result', () => {
  it('sent: the message as received goes to the relay, and a sent attempt with the reply is recorded', async () => {
    const { relay, recorded } = await attempt(accepted(), replyOk());
    expect(relay.sent).toMatchObject([{ deliveryId: 'd1', envelopeFrom: 'alice@outside.test', recipient: 'bob@inbox.test', raw: original }]);
    expect(recorded).toMatchObject({
      deliveryId: 'd1', attemptNumber: 1, status: 'sent', lastError: null, bounce: null,
      attempt: { status: 'sent', smtpCode: 250, enhancedCode: '2.0.0', smtpText: '250 2.0.0 queued as X' },
    });
  });

  it('a temporary refusal with the ladder left: retrying after the ladder\'s wait for this attempt', async () => {
    const { recorded } = await attempt(accepted({ attempt_count: 2 }), refused(451, '4.3.0', 'local error'));
    expect(recorded).toMatchObject({
      attemptNumber: 2, status: 'retrying', waitMs: 2_000, bounce: null, lastError: 'transient: 451 4.3.0 local error',
      attempt: { status: 'transport_failed', smtpCode: 451 },
    });
  });

  it('a temporary refusal on the last rung: dead letter with the ladder\'s reason, bounced to the sender', async () => {
    const { recorded, lifecycle } = await attempt(accepted({ attempt_count: 3 }), refused(451, '4.3.0', 'local error'));
    expect(recorded).toMatchObject({
      status: 'dead_letter', lastError: 'retry ladder exhausted after 3 attempts; last: transient: 451 4.3.0 local error',
      attempt: { status: 'transport_failed' },
    });
    expect(recorded?.bounce?.recipient).toBe('alice@outside.test');
    expect(recorded?.bounce?.raw.toString()).toContain('Status: 4.3.0');
    expect(lifecycle.bounces).toHaveLength(1);
  });

  it('a permanent refusal: failed at once, the provider\'s rejection recorded, bounced to the sender', async () => {
    const { recorded } = await attempt(accepted(), refused(550, '5.1.1', 'no such user'));
    expect(recorded).toMatchObject({
      status: 'failed', lastError: 'bad_recipient: 550 5.1.1 no such user',
      attempt: { status: 'provider_rejected', smtpCode: 550, enhancedCode: '5.1.1' },
    });
    expect(recorded?.bounce?.raw.toString()).toContain('Final-Recipient: rfc822; bob@inbox.test');
  });

  it('forwarded mail refused for good: sent from its SRS address, bounced to the original sender as the lease reclaim bounces it', async () => {
    const srs = 'SRS0=HHHH=TT=outside.test=alice@alias.test';
    const forwarder = { forward: async () => ({ envelopeFrom: srs, arcSet: null }) };
    const { relay, recorded } = await attempt(accepted(), refused(550, '5.1.1', 'no such user'), () => {}, { forwarder });
    expect(relay.sent[0]?.envelopeFrom).toBe(srs);
    // Not to the SRS address: that would go out to our own MX, back through the edge and its SRS
    // check, and its To: would show the rewritten address to the sender.
    expect(recorded?.bounce?.recipient).toBe('alice@outside.test');
    expect(recorded?.bounce?.raw.toString()).toContain('To: <alice@outside.test>');
  });

  it('mail of an internal producer fails without a bounce', async () => {
    const { recorded, lifecycle } = await attempt(rendered(), refused(550, '5.1.1', 'no such user'));
    expect(recorded).toMatchObject({ status: 'failed', bounce: null });
    expect(lifecycle.bounces).toEqual([]);
  });

  it('a refusal by the provider\'s suppression list: suppressed, with the rejected attempt', async () => {
    const { recorded } = await attempt(accepted(), refused(550, '5.7.1', 'recipient unsubscribed'));
    expect(recorded).toMatchObject({ status: 'suppressed', bounce: null, attempt: { status: 'provider_rejected' }, lastError: 'provider_suppressed: 550 5.7.1 recipient unsubscribed' });
  });

  it('a 552 to RCPT TO is the temporary 452 it stands for (RFC 5321 4.5.3.1.10); last_error says at which step it came', async () => {
    const { recorded } = await attempt(accepted(), refused(552, null, 'Too many recipients', { stage: 'rcpt' }));
    expect(recorded).toMatchObject({ status: 'retrying', waitMs: 1_000, bounce: null, attempt: { status: 'transport_failed', smtpCode: 552, smtpText: '552 Too many recipients' } });
    expect(recorded?.lastError).toBe('too_many_recipients: 552 Too many recipients (reply to RCPT TO)');
    // The same code to the end of data is a message too large: permanent.
    const { recorded: tooLarge } = await attempt(accepted(), refused(552, '5.3.4', 'Message size exceeds fixed limit', { stage: 'end_of_data', dataSent: true }));
    expect(tooLarge).toMatchObject({ status: 'failed', attempt: { status: 'provider_rejected' } });
    expect(tooLarge?.lastError).toBe('message_too_large: 552 5.3.4 Message size exceeds fixed limit (reply to the end of data)');
  });

  it('a malformed reply (lines that disagree) before the data: retried, no code recorded, never a refusal, logged as a warning', async () => {
    const warnings: string[] = [];
    const watching = Object.assign(Object.create(logger), { warn: (_: unknown, message: string) => warnings.push(message) });
    const malformed: SendResult = {
      ok: false,
      failure: {
        kind: 'connection',
        reply: null,
        stage: 'rcpt',
        category: 'malformed_reply',
        dataSent: false,
        interrupted: false,
        message: 'EPROTOCOL: Malformed reply to RCPT TO (its lines disagree on the code): "250-OK\\n550 5.1.1 no such user"',
      },
    };
    const { recorded } = await attempt(accepted(), malformed, () => {}, { logger: watching });
    expect(recorded).toMatchObject({ status: 'retrying', bounce: null, attempt: { status: 'transport_failed', smtpCode: null } });
    expect(recorded?.lastError).toBe('malformed_reply: EPROTOCOL: Malformed reply to RCPT TO (its lines disagree on the code): "250-OK\\n550 5.1.1 no such user"');
    expect(warnings).toEqual(['attempt failed: the relay sent a malformed reply']);
  });

  it('no reply after the data went out: outcome unknown, retried', async () => {
    const timeout: SendResult = { ok: false, failure: { kind: 'timeout', reply: null, dataSent: true, message: 'timed out after DATA', interrupted: false } };
    const { recorded } = await attempt(accepted(), timeout);
    expect(recorded).toMatchObject({ status: 'retrying', waitMs: 1_000, attempt: { status: 'outcome_unknown', smtpCode: null }, lastError: 'timeout_after_data: timed out after DATA' });
  });

  it('a send the engine cut short at shutdown: due again at once, whatever the ladder says', async () => {
    const cut: SendResult = { ok: false, failure: { kind: 'connection', reply: null, dataSent: false, message: 'interrupted', interrupted: true } };
    const { recorded } = await attempt(accepted({ attempt_count: 3 }), cut);
    expect(recorded).toMatchObject({ status: 'retrying', waitMs: 0, lastError: 'interrupted by engine shutdown: interrupted' });
  });

  it('a send shaping deferred before connecting: retrying after its wait, without an attempt, even on the last rung', async () => {
    const deferred: SendResult = {
      ok: false,
      failure: { kind: 'deferred', reply: null, dataSent: false, interrupted: false, message: 'deferred: site mx.example has no free connection (at most 2)', retryInMs: 4_321 },
    };
    const { recorded, lifecycle } = await attempt(accepted({ attempt_count: 3 }), deferred);
    expect(recorded).toMatchObject({ status: 'retrying', attempt: null, waitMs: 4_321, bounce: null, lastError: 'deferred: site mx.example has no free connection (at most 2)' });
    expect(lifecycle.bounces).toEqual([]);
  });
});

describe('attempt worker: deliveries that end without a send', () => {
  it('a recipient on the suppression list is suppressed without an attempt; the relay is not asked', async () => {
    const { relay, recorded } = await attempt(accepted({ suppressed_reason: 'hard bounce' }), replyOk());
    expect(relay.sent).toEqual([]);
    expect(recorded).toMatchObject({ status: 'suppressed', attempt: null, lastError: 'recipient is on the suppression list (hard bounce)' });
  });

  it('auth-session mail in stub mode is suppressed without an attempt', async () => {
    const { relay, recorded } = await attempt(rendered({ category: 'authsession' }), replyOk(), undefined, { mode: 'stub' });
    expect(relay.sent).toEqual([]);
    expect(recorded).toMatchObject({ status: 'suppressed', attempt: null, lastError: 'stub mode: auth-session mail is not sent' });
  });

  it('relayed mail whose message is gone fails without an attempt', async () => {
    const { relay, recorded } = await attempt(accepted(), replyOk(), (lifecycle) => lifecycle.payloads.clear());
    expect(relay.sent).toEqual([]);
    expect(recorded).toMatchObject({ status: 'failed', attempt: null, bounce: null, lastError: 'the received message is gone (purged by retention or deleted)' });
  });
});

describe('attempt worker: recording the outcome', () => {
  it('retries recording while the database is away, so a known "sent" is not lost', async () => {
    const { lifecycle, recorded } = await attempt(accepted(), replyOk(), (fake) => fake.failNext(pgError('57P01', 'terminating connection')));
    expect(lifecycle.batches).toHaveLength(2);
    expect(recorded).toMatchObject({ status: 'sent' });
  });

  it('a dead letter whose lease was lost is not counted: another engine has the delivery', async () => {
    const deadLetters = (metrics: Awaited<ReturnType<typeof attempt>>['metrics']) =>
      metrics.find((metric) => metric.name === 'mail_delivery_dead_letters_total')?.values[0]?.value ?? 0;
    const kept = await attempt(accepted({ attempt_count: 3 }), refused(451, '4.3.0', 'local error'));
    expect(deadLetters(kept.metrics)).toBe(1);
    const lost = await attempt(accepted({ attempt_count: 3 }), refused(451, '4.3.0', 'local error'), (fake) => fake.lost.add('d1'));
    expect(lost.recorded).toMatchObject({ status: 'dead_letter' });
    expect(deadLetters(lost.metrics)).toBe(0);
    expect(lost.lifecycle.bounces).toEqual([]);
  });
});

describe('attempt worker: DKIM signing', () => {
  const signature = Buffer.from('DKIM-Signature: v=1; d=postern.test; s=s1; b=x\r\n');
  /** A signer that signs everything it is asked about, and remembers the From domains it was asked for. */
  function recordingSigner(answer: () => Promise<Buffer | null> = async () => signature) {
    const asked: string[] = [];
    const signer = {
      async signatureFor(raw: Buffer) {
        asked.push(raw.toString().match(/^From: (.*)$/m)?.[1] ?? '');
        return answer();
      },
    };
    return { asked, signer };
  }

  it('composed mail goes to the relay with its signature in front, the message bytes unchanged', async () => {
    const { signer, asked } = recordingSigner();
    const { relay, recorded } = await attempt(rendered(), replyOk(), undefined, { signer });
    expect(asked).toEqual(['postern@postern.test']);
    expect(relay.sent[0]?.headerPrefix).toBe(signature);
    expect(relay.sent[0]?.raw.toString()).not.toContain('DKIM-Signature');
    expect(recorded).toMatchObject({ status: 'sent' });
  });

  it("Postern's own bounces are signed; mail relayed for others is not", async () => {
    const { signer, asked } = recordingSigner();
    const bounce = await attempt(accepted({ source: 'postern-dsn', category: 'bounce', envelope_from: '' }), replyOk(), undefined, { signer });
    expect(bounce.relay.sent[0]?.headerPrefix).toBe(signature);
    const relayed = await attempt(accepted(), replyOk(), undefined, { signer });
    expect(relayed.relay.sent[0]?.headerPrefix).toBeUndefined();
    expect(asked).toHaveLength(1);
  });

  it('a key that cannot be used: the delivery waits without an attempt and is not sent unsigned', async () => {
    const { signer } = recordingSigner(async () => {
      throw new SigningUnavailable('MAIL_SECRETS_KEY is not set: signing mail from postern.test needs it');
    });
    const { relay, recorded } = await attempt(rendered({ attempt_count: 3 }), replyOk(), undefined, { signer });
    expect(relay.sent).toEqual([]);
    expect(recorded).toMatchObject({
      status: 'retrying', attempt: null, waitMs: 1_000,
      lastError: 'DKIM signing unavailable: MAIL_SECRETS_KEY is not set: signing mail from postern.test needs it',
    });
  });
});

describe('attempt worker: forwarded mail (SRS and ARC)', () => {
  const arcSet = Buffer.from('ARC-Seal: i=1; a=rsa-sha256; cv=none; d=alias.test; s=s1; b=x\r\n');
  function recordingForwarder(answer: () => Promise<{ envelopeFrom: string; arcSet: Buffer | null }>) {
    const asked: Array<{ envelopeFrom: string; envelopeTo: readonly string[] | undefined }> = [];
    const forwarder = {
      async forward(envelopeFrom: string, payload: { raw: Buffer; envelopeTo?: readonly string[] }) {
        asked.push({ envelopeFrom, envelopeTo: payload.envelopeTo });
        return answer();
      },
    };
    return { asked, forwarder };
  }

  it('mail relayed for others goes with the forwarder\'s envelope sender and ARC set, its bytes unchanged', async () => {
    const { forwarder, asked } = recordingForwarder(async () => ({ envelopeFrom: 'SRS0=abcdefgh=AA=outside.test=alice@alias.test', arcSet }));
    const { relay, recorded } = await attempt(accepted(), replyOk(), undefined, { forwarder });
    expect(asked).toEqual([{ envelopeFrom: 'alice@outside.test', envelopeTo: ['list@alias.test'] }]);
    expect(relay.sent[0]).toMatchObject({ envelopeFrom: 'SRS0=abcdefgh=AA=outside.test=alice@alias.test', headerPrefix: arcSet, raw: original });
    expect(recorded).toMatchObject({ status: 'sent' });
  });

  it("Postern's own bounces are not forwarded mail", async () => {
    const { forwarder, asked } = recordingForwarder(async () => ({ envelopeFrom: 'never', arcSet }));
    const bounce = await attempt(accepted({ source: 'postern-dsn', category: 'bounce', envelope_from: '' }), replyOk(), undefined, { forwarder });
    expect(asked).toEqual([]);
    expect(bounce.relay.sent[0]?.envelopeFrom).toBe('');
  });

  it('an ARC key that cannot be used: the delivery waits without an attempt, never sent unsealed', async () => {
    const { forwarder } = recordingForwarder(async () => {
      throw new SigningUnavailable('ARC sealing with s1._domainkey.alias.test failed: bad key');
    });
    const { relay, recorded } = await attempt(accepted(), replyOk(), undefined, { forwarder });
    expect(relay.sent).toEqual([]);
    expect(recorded).toMatchObject({ status: 'retrying', attempt: null, lastError: 'DKIM signing unavailable: ARC sealing with s1._domainkey.alias.test failed: bad key' });
  });
});

describe('attempt worker: the queue lifetime (MAIL_QUEUE_LIFETIME)', () => {
  const deferred: SendResult = {
    ok: false,
    failure: { kind: 'deferred', reply: null, dataSent: false, interrupted: false, message: 'deferred: relay relay.test:25 is backed off', retryInMs: 30_000 },
  };
  const sampleOf = (metrics: Awaited<ReturnType<typeof attempt>>['metrics'], name: string, labels: Record<string, string> = {}) =>
    metrics.find((metric) => metric.name === name)?.values.find((value) => Object.entries(labels).every(([key, label]) => value.labels[key] === label))?.value ?? 0;

  it('a deferral within the lifetime: retrying without an attempt, as before', async () => {
    const { recorded, metrics } = await attempt(accepted({ attempt_count: 3, queued_since: queuedHoursAgo(119) }), deferred);
    expect(recorded).toMatchObject({ status: 'retrying', attempt: null, waitMs: 30_000, bounce: null, lastError: 'deferred: relay relay.test:25 is backed off' });
    expect(sampleOf(metrics, 'mail_delivery_expired_total', { waited_for: 'deferred' })).toBe(0);
  });

  it('a deferral after the lifetime: a dead letter without an attempt, bounced as expired (4.4.7), counted', async () => {
    const queuedSince = queuedHoursAgo(121);
    const { recorded, lifecycle, metrics } = await attempt(accepted({ attempt_count: 3, queued_since: queuedSince }), deferred);
    expect(recorded).toMatchObject({
      status: 'dead_letter', attempt: null,
      lastError: `in the queue since ${queuedSince.toISOString()}, longer than MAIL_QUEUE_LIFETIME (120h) without being sent; last: deferred: relay relay.test:25 is backed off`,
    });
    expect(lifecycle.bounces).toHaveLength(1);
    const bounce = recorded?.bounce?.raw.toString() ?? '';
    expect(recorded?.bounce?.recipient).toBe('alice@outside.test');
    expect(bounce).toContain('Status: 4.4.7');
    expect(bounce).toContain('Diagnostic-Code: x-postern; in the queue since');
    // The claim's number was given back: two attempts were made, not three.
    expect(bounce).toContain('after 2 attempt(s)');
    expect(bounce).toContain('Subject: Quarterly report');
    expect(sampleOf(metrics, 'mail_delivery_expired_total', { waited_for: 'deferred' })).toBe(1);
    expect(sampleOf(metrics, 'mail_delivery_dead_letters_total')).toBe(1);
  });

  it('a temporary failure with the ladder left, after the lifetime: a dead letter with its attempt, 4.4.7, the reply as diagnostic', async () => {
    const { recorded } = await attempt(accepted({ attempt_count: 1, queued_since: queuedHoursAgo(121) }), refused(451, '4.3.0', 'local error'));
    expect(recorded).toMatchObject({ status: 'dead_letter', attempt: { status: 'transport_failed', smtpCode: 451 } });
    expect(recorded?.lastError).toMatch(/longer than MAIL_QUEUE_LIFETIME \(120h\) without being sent; last: transient: 451 4\.3\.0 local error$/);
    const bounce = recorded?.bounce?.raw.toString() ?? '';
    expect(bounce).toContain('Status: 4.4.7');
    expect(bounce).toContain('Diagnostic-Code: smtp; 451 4.3.0 local error');
  });

  it('a key that cannot seal, after the lifetime: a dead letter without an attempt, its bounce quoting the received message', async () => {
    const forwarder = {
      forward: async () => {
        throw new SigningUnavailable('ARC sealing with s1._domainkey.alias.test failed: bad key');
      },
    };
    const { relay, recorded, metrics } = await attempt(accepted({ queued_since: queuedHoursAgo(200) }), replyOk(), undefined, { forwarder });
    expect(relay.sent).toEqual([]);
    expect(recorded).toMatchObject({ status: 'dead_letter', attempt: null });
    expect(recorded?.lastError).toMatch(/last: DKIM signing unavailable: ARC sealing/);
    expect(recorded?.bounce?.raw.toString()).toContain('Subject: Quarterly report');
    expect(sampleOf(metrics, 'mail_delivery_expired_total', { waited_for: 'signing' })).toBe(1);
  });

  it("an internal producer's mail after the lifetime: a dead letter, no bounce", async () => {
    const { recorded, lifecycle } = await attempt(rendered({ queued_since: queuedHoursAgo(121) }), deferred);
    expect(recorded).toMatchObject({ status: 'dead_letter', attempt: null, bounce: null });
    expect(lifecycle.bounces).toEqual([]);
  });
});
