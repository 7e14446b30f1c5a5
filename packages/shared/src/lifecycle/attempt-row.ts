// The attempt row every status change carries (no-health-endpoints: "every attempt is a row"), as the
// parameters the outcome statements share (record-outcomes.ts: one array element each). The reply
// text comes from the relay, a peer Postern does not control: made storable here, once.
import { storableTextOrNull } from '../text/storable-text.ts';
import type { AttemptStatus } from './statuses.ts';

export interface AttemptRecord {
  status: AttemptStatus;
  smtpCode: number | null;
  enhancedCode: string | null;
  smtpText: string | null;
  startedAt: Date;
  finishedAt: Date;
  durationMs: number;
  /** The route the send took (the engine's route table): the matching route's domain or null
   *  (the default), "mx" or the relay's host:port, the TLS requirement. Absent in stub mode. */
  route?: { domain: string | null; relay: string; tls: string | null } | null;
}

export function attemptValues(attempt: AttemptRecord): unknown[] {
  return [
    attempt.status,
    attempt.smtpCode !== null && attempt.smtpCode >= 200 && attempt.smtpCode <= 599 ? attempt.smtpCode : null,
    attempt.enhancedCode && /^[245]\.[0-9]{1,3}\.[0-9]{1,3}$/.test(attempt.enhancedCode) ? attempt.enhancedCode : null,
    storableTextOrNull(attempt.smtpText, { maxChars: 1_000 }),
    attempt.startedAt,
    attempt.finishedAt,
    Math.max(0, Math.round(attempt.durationMs)),
    attempt.route?.domain ?? null,
    attempt.route?.relay ?? null,
    attempt.route?.tls ?? null,
  ];
}
