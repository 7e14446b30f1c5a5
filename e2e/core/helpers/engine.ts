// Engines for the tests, in-process, listening on ports the OS picks (two in one test is easy).
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  acceptCommand,
  type DeliveryCommand,
  loadConfig,
  loadTemplateCatalog,
  type PosternConfig,
  type TemplateCatalog,
} from '@postern/shared';
import type pg from 'pg';
import { type Engine, type EngineDeps, startEngine } from '../../../apps/core/src/engine.ts';
import { checkingKeysOnStop, keyCheckedLogger, metricSample, waitFor } from '../../harness/index.ts';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const TEMPLATE_DIR = path.join(repoRoot, 'templates');
export const SENDER = 'postern@postern.test';

let catalog: TemplateCatalog | null = null;
export function testCatalog(): TemplateCatalog {
  catalog ??= loadTemplateCatalog(TEMPLATE_DIR);
  return catalog;
}

export function engineConfig(dsn: string, env: Record<string, string> = {}): PosternConfig {
  return loadConfig(
    {
      MAIL_POSTGRES_PRIMARY_DSN: dsn,
      MAIL_INTERNAL_HTTP_ADDR: '127.0.0.1:0',
      MAIL_TEMPLATE_DIR: TEMPLATE_DIR,
      MAIL_SMTP_FROM: SENDER,
      MAIL_LOG_LEVEL: process.env.POSTERN_E2E_LOG_LEVEL ?? 'silent',
      MAIL_POSTGRES_POOL_MAX: '6',
      MAIL_SHUTDOWN_TIMEOUT: '5s',
      MAIL_SMTP_TIMEOUT: '2s',
      MAIL_LEASE_DURATION: '30s',
      MAIL_WATCHDOG_STALL_THRESHOLD: '10s',
      MAIL_HEARTBEAT_INTERVAL: '500ms',
      MAIL_SCHEDULER_POLL_INTERVAL: '250ms',
      MAIL_ATTEMPT_WORKER_CONCURRENCY: '4',
      MAIL_RETRY_LADDER: '300ms,300ms,300ms',
      ...env,
    },
    'core',
  );
}

/** An engine whose stop() fails if a line it logged named a key twice (unless the test logs itself). */
export async function startTestEngine(dsn: string, env: Record<string, string> = {}, deps: Partial<EngineDeps> = {}): Promise<Engine> {
  const config = engineConfig(dsn, env);
  if (deps.logger) return startEngine(config, { catalog: testCatalog(), ...deps, logger: deps.logger });
  const checked = keyCheckedLogger('core-e2e', config.logLevel);
  return checkingKeysOnStop(await startEngine(config, { catalog: testCatalog(), ...deps, logger: checked.logger }), checked);
}

/** A delivery created through the shared intake, as the stream or the API would. */
export async function queueDelivery(
  pool: pg.Pool,
  command: Partial<DeliveryCommand> & Pick<DeliveryCommand, 'recipient'>,
): Promise<string> {
  const outcome = await acceptCommand(
    pool,
    {
      schemaVersion: '2',
      source: 'e2e',
      idempotencyKey: `k-${Math.random().toString(36).slice(2)}`,
      deliveryId: null,
      category: null,
      payload: { mode: 'rendered', subject: `to ${command.recipient}`, text: 'hello', html: null },
      traceparent: null,
      ...command,
    },
    { catalog: testCatalog(), sender: SENDER },
  );
  if (outcome.status === 'refused') throw new Error(`refused: ${outcome.failure.detail}`);
  return outcome.deliveryId;
}

/** A message as the edge stores it (apps/mta accept-message.ts): message, payload, relay delivery. */
export async function insertAcceptedMessage(
  pool: pg.Pool,
  envelopeFrom: string,
  recipient: string,
  options: InsertOptions = {},
): Promise<{ deliveryId: string; raw: Buffer }> {
  const raw = Buffer.from(
    `Received: from client.outside.test by mx.postern.test with ESMTP id x; ${new Date().toUTCString()}\r\n` +
      `From: <${envelopeFrom || 'nobody@outside.test'}>\r\nTo: <${recipient}>\r\nSubject: Minutes of the meeting\r\n` +
      `Message-ID: <${randomUUID()}@outside.test>\r\nDKIM-Signature: v=1; a=rsa-sha256; d=outside.test; b=abc\r\n\r\n` +
      'Line one.\r\n  indented line, trailing spaces   \r\n.leading dot\r\n',
  );
  return { deliveryId: await insertRelayedMessage(pool, envelopeFrom, recipient, raw, options), raw };
}

export interface InsertOptions {
  /** Not due for an hour: a live engine leaves it alone until the test changes it (e.g. leases it to
   *  a dead engine), instead of racing the test for it. */
  notDue?: boolean;
}

/** Exactly these bytes, stored as the edge stores what it accepted; returns the delivery id. */
export async function insertRelayedMessage(pool: pg.Pool, envelopeFrom: string, recipient: string, raw: Buffer, options: InsertOptions = {}): Promise<string> {
  const messageId = randomUUID();
  const deliveryId = randomUUID();
  await pool.query(
    `WITH m AS (INSERT INTO mail.messages (id, envelope_from, envelope_to, size_bytes) VALUES ($1, $2, ARRAY[$3], $4) RETURNING id),
          p AS (INSERT INTO mail.message_payloads (message_id, raw) SELECT id, $5 FROM m)
     INSERT INTO mail.deliveries (id, source, payload_mode, message_id, recipient, envelope_from, rfc_message_id, status, next_attempt_at)
     SELECT $6, 'smtp', 'relay', m.id, $3, $2, $7, 'queued', now() + $8::int * interval '1 second' FROM m`,
    [messageId, envelopeFrom, recipient, raw.length, raw, deliveryId, `<${deliveryId}@mx.postern.test>`, options.notDue ? 3600 : 0],
  );
  return deliveryId;
}

export interface DeliveryRow {
  id: string;
  status: string;
  attempt_count: number;
  last_error: string | null;
  recipient: string;
}

export async function deliveryRow(pool: pg.Pool, id: string): Promise<DeliveryRow | undefined> {
  const { rows } = await pool.query<DeliveryRow>('SELECT id, status, attempt_count, last_error, recipient FROM mail.deliveries WHERE id = $1', [id]);
  return rows[0];
}

export function waitForStatus(pool: pg.Pool, id: string, status: string, timeoutMs = 20_000): Promise<DeliveryRow | undefined> {
  return waitFor(`delivery ${id} to be ${status}`, () => deliveryRow(pool, id), (row) => row?.status === status, { timeoutMs, intervalMs: 100 });
}

export async function attemptsOf(pool: pg.Pool, id: string): Promise<Array<{ attempt_number: number; status: string; smtp_code: number | null; smtp_text: string | null }>> {
  const { rows } = await pool.query(
    'SELECT attempt_number, status, smtp_code, smtp_text FROM mail.attempts WHERE delivery_id = $1 ORDER BY attempt_number',
    [id],
  );
  return rows;
}

export async function metricsText(engine: Engine): Promise<string> {
  if (!engine.http) throw new Error('engine started without HTTP');
  return (await fetch(`http://${engine.http.host}:${engine.http.port}/metrics`)).text();
}

/** The value of one sample, e.g. metricValue(text, 'mail_delivery_dead_letters_total'). */
export const metricValue = metricSample;

export function unique(label: string): string {
  return `${label}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}@inbox.test`;
}

/** The deliveries to one recipient domain by status: `{ sent: 3, retrying: 1 }`. */
export async function statusesOfDomain(pool: pg.Pool, domain: string): Promise<Record<string, number>> {
  const { rows } = await pool.query<{ status: string; n: number }>(
    'SELECT status, count(*)::int AS n FROM mail.deliveries WHERE recipient LIKE $1 GROUP BY status ORDER BY status',
    [`%@${domain}`],
  );
  return Object.fromEntries(rows.map((row) => [row.status, row.n]));
}
