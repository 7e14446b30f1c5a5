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
import { fromAddresses, wholeHeaderSection } from '../data/parse-headers.ts';
import type { InboundAuthMetrics } from './auth-metrics.ts';
import { evaluationResolver } from './auth-resolver.ts';
import { dmarcOfEachAuthorDomain } from './author-domains.ts';
import { type InboundAuthResult, MAX_SIGNATURES_VERIFIED, summarize, unknownVerdicts } from './verdicts.ts';

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
/** Bytes handed to mailauth in one turn of the event loop (see feed()). */
const BYTES_PER_TURN = 256 * 1024;

/**
 * The message as mailauth reads it. mailauth hashes each chunk in the call that receives it, and
 * the chunks of an array stream follow one another in microtasks: without a pause the whole message
 * would pass in one turn of the event loop, every other session and the deadline's timer waiting
 * (a 20 MB message with many body hashes held it for seconds). So every BYTES_PER_TURN it waits for
 * the next turn, and once the deadline has passed it feeds nothing more: the evaluation fails and
 * is recorded as unknown, and an abandoned evaluation stops costing CPU.
 */
async function* feed(message: readonly Buffer[], deadline: AbortSignal): AsyncGenerator<Buffer> {
  let sinceTurn = 0;
  for (const chunk of message) {
    if (sinceTurn >= BYTES_PER_TURN) {
      sinceTurn = 0;
      await new Promise((next) => setImmediate(next));
    }
    deadline.throwIfAborted();
    sinceTurn += chunk.length;
    yield chunk;
  }
}

export type InboundAuth = (message: readonly Buffer[], session: SessionFacts) => Promise<InboundAuthResult>;

export function createInboundAuth(options: InboundAuthOptions): InboundAuth {
  return async (message, session) => {
    const started = performance.now();
    const deadline = new AbortController();
    const resolver = evaluationResolver(options.resolver, deadline.signal);
    let timer: NodeJS.Timeout | undefined;
    let windDown: NodeJS.Timeout | undefined;
    const evaluation = authenticate(Readable.from(feed(message, deadline.signal), { objectMode: false }), {
      ip: session.clientAddress,
      helo: session.helo ?? undefined,
      sender: session.envelopeFrom,
      mta: options.hostname,
      resolver: resolver.resolve as never,
      // BIMI is for mail clients showing logos, not for accepting mail: no lookups for it.
      disableBimi: true,
      maxSignatures: MAX_SIGNATURES_VERIFIED,
    }).then(async (result) => {
      const authors = await dmarcOfEachAuthorDomain(result, resolver.resolve, fromAddresses(wholeHeaderSection(message)));
      return summarize(result, options.hostname, resolver.temporaryFailures, authors);
    });
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
      if (deadline.signal.aborted) outcome = unknownVerdicts(options.hostname, 'deadline');
      else {
        options.logger.warn({ err: error }, 'inbound authentication failed: every method recorded as temperror');
        outcome = unknownVerdicts(options.hostname, 'error');
      }
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
