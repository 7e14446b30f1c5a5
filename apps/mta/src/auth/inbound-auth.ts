// SPF, DKIM, DMARC and ARC of one received message, with mailauth's authenticate() (docs/mta.md,
// "Inbound authentication"). It runs after the final dot and before the accept statement, on the
// bytes the collector already holds: they are streamed to mailauth chunk by chunk (the DKIM body
// hash is computed as they pass), so a 25 MiB message is not copied a second time. Lookups go
// through the edge's mail resolver (MAIL_DNS_SERVERS, its cache) as auth-resolver.ts maps them.
// The evaluation has a deadline (MAIL_INBOUND_AUTH_TIMEOUT): when it passes, every lookup still
// open fails at once, mailauth finishes with a temperror for what it did not know yet and its
// verdicts for what it did; should it still not finish, every method is a temperror. mailauth
// throwing on a crafted message is the same: unknown, never a crash and never a 5xx.
import { Readable } from 'node:stream';
import type { Logger, MailResolver } from '@postern/shared';
import { authenticate } from 'mailauth';
import type { InboundAuthMetrics } from './auth-metrics.ts';
import { evaluationResolver } from './auth-resolver.ts';
import { type InboundAuthResult, summarize, unknownVerdicts } from './verdicts.ts';

/** The SMTP facts SPF checks (RFC 7208 2.3, 2.4). */
export interface SessionFacts {
  /** The client's address as the socket gives it (an IPv4-mapped IPv6 address counts as IPv4). */
  clientAddress: string;
  /** The HELO/EHLO argument, or null. */
  helo: string | null;
  /** The MAIL FROM address; '' for the null reverse-path (then SPF checks postmaster@HELO). */
  envelopeFrom: string;
}

export interface InboundAuthOptions {
  resolver: MailResolver;
  /** The authserv-id of the header: MAIL_MTA_HOSTNAME. */
  hostname: string;
  timeoutMs: number;
  metrics: InboundAuthMetrics;
  logger: Logger;
}

/** How long past the deadline mailauth may take to wind down before its answer is not waited for. */
const WIND_DOWN_MS = 1_000;

export type InboundAuth = (message: readonly Buffer[], session: SessionFacts) => Promise<InboundAuthResult>;

export function createInboundAuth(options: InboundAuthOptions): InboundAuth {
  return async (message, session) => {
    const started = performance.now();
    const deadline = new AbortController();
    const resolver = evaluationResolver(options.resolver, deadline.signal);
    let timer: NodeJS.Timeout | undefined;
    let windDown: NodeJS.Timeout | undefined;
    const evaluation = authenticate(Readable.from(message, { objectMode: false }), {
      ip: session.clientAddress,
      helo: session.helo ?? undefined,
      sender: session.envelopeFrom,
      mta: options.hostname,
      resolver: resolver.resolve as never,
      // BIMI is for mail clients showing logos, not for accepting mail: no lookups for it.
      disableBimi: true,
    }).then((result) => summarize(result, options.hostname, resolver.temporaryFailures));
    const expired = new Promise<InboundAuthResult>((settle) => {
      timer = setTimeout(() => {
        deadline.abort();
        windDown = setTimeout(() => settle(unknownVerdicts(options.hostname, 'deadline')), WIND_DOWN_MS);
      }, options.timeoutMs);
    });
    let outcome: InboundAuthResult;
    try {
      outcome = await Promise.race([evaluation, expired]);
      if (deadline.signal.aborted && outcome.verdicts.incomplete === undefined) outcome.verdicts.incomplete = 'deadline';
    } catch (error) {
      options.logger.warn({ err: error }, 'inbound authentication failed: every method recorded as temperror');
      outcome = unknownVerdicts(options.hostname, 'error');
    } finally {
      clearTimeout(timer);
      clearTimeout(windDown);
      deadline.abort();
    }
    // An evaluation abandoned at the deadline may still settle or fail later: nobody waits for it.
    evaluation.catch(() => undefined);
    options.metrics.observe(outcome, performance.now() - started);
    return outcome;
  };
}
