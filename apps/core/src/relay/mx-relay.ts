/// <reference path="./mx-connect.d.ts" />
// Direct delivery (MAIL_SMTP_MODE=mx): each message goes to its recipient domain's own MX hosts,
// as an MTA on the internet delivers. mx-connect (by nodemailer's authors) finds them — MX records
// in priority order, the domain's own A/AAAA as an implicit MX when it has none (RFC 5321 5.1),
// a null MX (RFC 7505) refused — and opens the TCP connection over IPv4 or IPv6, every lookup
// going through Postern's one mail resolver (packages/shared/src/dns/). nodemailer's
// SMTPConnection then runs the session on that socket (smtp-transaction.ts, as for a relay).
// The next host is tried when one cannot be connected to (mx-connect) or when its session cannot
// be set up — a 4xx (or 5xx) greeting, EHLO refused, a failed TLS handshake — as Postfix does.
// STARTTLS is used whenever a host offers it, opportunistically: a certificate that does not
// verify still encrypts (better than plaintext, as RFC 7435 argues) and is recorded with the
// route in the attempt's text; a host whose TLS handshake fails is tried once more without TLS,
// as Postfix's "may" level does. A recipient domain's MTA-STS policy (mta-sts.ts) in enforce mode
// turns this off for its mail: only the MX hosts it lists, only over TLS with a certificate valid
// for the MX name; a host that falls short is passed over, and with none left the attempt is
// deferred (category mta_sts). In testing mode the shortfall is only counted and logged.
// What DNS answers decide: only the recipient domain's own authoritative answers are permanent
// (a null MX; NXDOMAIN or no MX, A or AAAA record); every lookup that fails (timeout, SERVFAIL,
// no server reachable) and every MX host that does not resolve is temporary: the delivery is
// retried, never bounced.
// Shaping per destination site (site-shaping.ts, when given): a send first enters its site, and
// either reuses an idle connection to it, opens a new one on a connection slot shared by every
// engine, or is deferred without connecting; a connection goes back to the site's pool only
// after an accepted transaction. A reused connection the server had closed while it was idle,
// lost before it answered a word of the transaction, is replaced by a new one on its slot and the
// message sent on that, within the same send.
import tls from 'node:tls';
import { domainToASCII } from 'node:url';
import { childLogger, isDnsNoRecord, type Logger, MAIL_RECORD_TYPES, type MailRecordType, type MailResolver } from '@postern/shared';
import mxConnect, { type MxConnectError, type MxConnection } from 'mx-connect';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { type MtaSts, mxListed, type StsPolicy } from './mta-sts.ts';
import type { OutboundMessage, Relay, Route, SendFailure, SendResult, TlsUse } from './relay.ts';
import type { SiteLease, SiteShaping } from './site-shaping.ts';
import { failureOf, lostBeforeAnyReply, type NodemailerError, runTransaction, sentResult, startSendDeadline } from './smtp-transaction.ts';

export interface MxRelayOptions {
  resolver: MailResolver;
  /** MAIL_MX_PORT: 25 on the internet. */
  port: number;
  /** MAIL_MX_PRIVATE_ADDRESSES: whether an MX host may be at a loopback, private, link-local,
   *  carrier-grade NAT or unique-local address (mx-connect's blockLocalAddresses when refused). */
  privateAddresses: 'refuse' | 'allow';
  /** The EHLO name: the name the sending address's PTR record gives (docs/deploy.md). */
  localName: string;
  /** MAIL_SMTP_TIMEOUT: connecting to one host, the greeting, every reply. */
  timeoutMs: number;
  sendDeadlineMs: number;
  logger: Logger;
  /** Recipient domains' MTA-STS policies (mta-sts.ts); without it, TLS stays opportunistic for all. */
  mtaSts?: MtaSts;
  /** Limits per destination site and connection reuse; absent: one connection per send. */
  shaping?: SiteShaping;
}

/** Hosts one send tries at most (mx-connect's own cap per call). */
const MAX_HOSTS = 20;

type Answer = 'records' | 'NXDOMAIN' | 'NODATA' | 'failed';

/** A session whose setup failed on one host: the next one is tried. */
class SetupFailed extends Error {
  readonly failure: NodemailerError;
  /** It failed during the TLS handshake after STARTTLS. */
  readonly inTlsHandshake: boolean;
  constructor(failure: NodemailerError, inTlsHandshake: boolean) {
    super(failure.message);
    this.failure = failure;
    this.inTlsHandshake = inTlsHandshake;
  }
}

class CutShort extends Error {}

/** What ends a send when the recipient domain's enforce policy passed over every host left. */
function policyRefusal(): SetupFailed {
  return new SetupFailed(Object.assign(new Error('no MX host satisfies it'), { code: 'EPOLICY' }) as NodemailerError, false);
}

function tlsUseOf(connection: SMTPConnection): TlsUse {
  const socket = connection._socket;
  if (!connection.secure || !(socket instanceof tls.TLSSocket)) return { kind: 'none' };
  const protocol = socket.getProtocol() ?? 'TLS';
  if (socket.authorized) return { kind: 'verified', protocol };
  const problem = socket.authorizationError as Error | string | undefined;
  return { kind: 'unverified', protocol, problem: (typeof problem === 'string' ? problem : problem?.message) ?? 'unknown' };
}

/** "mx1.example.net[192.0.2.25]: Connection refused" out of mx-connect's longer sentence. */
function connectProblem(error: MxConnectError, host: string): string {
  const match = /MX server (\S+) for .*?: (.*)$/.exec(error.message);
  return match ? `${match[1]}: ${match[2]}` : `[${host}]: ${error.message}`;
}

function recipientDomain(recipient: string): string {
  return recipient.slice(recipient.lastIndexOf('@') + 1);
}

export function createMxRelay(options: MxRelayOptions): Relay {
  const log = childLogger(options.logger, { component: 'mx-relay' });
  /** Each send under way, cut short by interrupt(). */
  const underWay = new Set<() => void>();

  return {
    name: 'mx',
    async send(message: OutboundMessage, progress: () => void = () => {}): Promise<SendResult> {
      const domain = recipientDomain(message.recipient);
      const asciiDomain = (domainToASCII(domain) || domain).toLowerCase();
      /** The recipient domain's own answers: only they can make a failure permanent. */
      const answers = new Map<string, Answer>();
      const skipped: string[] = [];
      const ignore: string[] = [];
      let open: { close(): void } | null = null;
      let stopped: 'deadline' | 'interrupt' | null = null;
      let cut: (error: Error) => void = () => {};
      const cutShort = new Promise<never>((_, reject) => {
        cut = reject;
      });
      cutShort.catch(() => {});
      const stop = (why: 'deadline' | 'interrupt') => {
        stopped ??= why;
        open?.close();
        cut(new CutShort(why));
      };
      const deadline = startSendDeadline(options.sendDeadlineMs, 'the MX host', () => stop('deadline'));
      const interrupt = () => stop('interrupt');
      underWay.add(interrupt);

      const resolveRecords = async (name: string, type: string): Promise<unknown[]> => {
        const key = `${type} ${name.toLowerCase().replace(/\.$/, '')}`;
        if (!MAIL_RECORD_TYPES.includes(type as MailRecordType)) {
          throw Object.assign(new Error(`DNS record type ${type} is not looked up`), { code: 'ENOTIMP' });
        }
        try {
          const records = await options.resolver.resolve(name, type as MailRecordType);
          answers.set(key, 'records');
          return records;
        } catch (error) {
          const code = (error as { code?: string }).code;
          answers.set(key, isDnsNoRecord(error) ? (code === 'ENOTFOUND' ? 'NXDOMAIN' : 'NODATA') : 'failed');
          throw error;
        } finally {
          progress();
        }
      };

      /** A connected socket to the best host not tried yet, or why there is none. */
      const connect = (lastSetupFailure: SetupFailed | null) =>
        mxConnect({
          target: domain,
          port: options.port,
          maxConnectTime: options.timeoutMs,
          localHostname: options.localName,
          dnsOptions: { resolveRecords, blockLocalAddresses: options.privateAddresses === 'refuse' },
          ignoreMXHosts: [...ignore],
          ...(lastSetupFailure ? { mxLastError: lastSetupFailure } : {}),
          connectError: (error, _delivery, tried) => {
            ignore.push(tried.host);
            skipped.push(connectProblem(error, tried.host));
            progress();
          },
        });

      /** Greeting, EHLO and STARTTLS on a connected socket. */
      const setUp = (connected: MxConnection, withTls: boolean, verifiedTls: boolean) =>
        new Promise<SMTPConnection>((resolve, reject) => {
          const connection = new SMTPConnection({
            connection: connected.socket,
            // The MX host's name: SNI, and the name its certificate is checked against.
            host: connected.hostname,
            port: connected.port,
            name: options.localName,
            opportunisticTLS: !verifiedTls,
            ignoreTLS: !withTls && !verifiedTls,
            // An MTA-STS enforce policy: STARTTLS or nothing, with a certificate that verifies.
            requireTLS: verifiedTls,
            // Opportunistic TLS: an unverifiable certificate still encrypts; it is recorded, not refused.
            tls: { rejectUnauthorized: verifiedTls },
            connectionTimeout: options.timeoutMs,
            greetingTimeout: options.timeoutMs,
            socketTimeout: options.timeoutMs,
            // Every reply line is progress (patches/nodemailer+10.6.0.patch).
            onResponseLine: () => progress(),
            // A reply whose lines disagree, or more replies than commands, is a protocol error
            // (patches/nodemailer+10.6.0.patch), never read by its first character (failureOf).
            strictReplies: true,
            logger: false,
          });
          open = connection;
          const onError = (error: Error) => reject(new SetupFailed(error as NodemailerError, connection.upgrading === true || (error as NodemailerError).code === 'ETLS'));
          connection.once('error', onError);
          connection.connect(() => {
            connection.off('error', onError);
            // Later errors reach the send callback; the listener only keeps them from being uncaught.
            connection.on('error', () => {});
            resolve(connection);
          });
        });

      /** Why a send that reached no session failed: permanent only on the domain's own answer. */
      const routingFailure = (error: MxConnectError): SendFailure => {
        const tried = skipped.length > 0 ? ` (tried: ${skipped.join('; ')})` : '';
        const base = { reply: null, dataSent: false, interrupted: false, message: `${error.code ?? 'ERROR'}: ${error.message}${tried}`.slice(0, 1_000) };
        if (error.code === 'ENULLMX') return { ...base, kind: 'unroutable', category: 'null_mx' };
        if (error.category === 'dns') {
          const mx = answers.get(`MX ${asciiDomain}`);
          const noAddress = ['NXDOMAIN', 'NODATA'].includes(answers.get(`A ${asciiDomain}`) ?? '') && ['NXDOMAIN', 'NODATA'].includes(answers.get(`AAAA ${asciiDomain}`) ?? '');
          if (mx === 'NXDOMAIN' && noAddress) {
            return { ...base, kind: 'unroutable', category: 'no_such_domain', message: `NXDOMAIN: the recipient domain ${asciiDomain} does not exist` };
          }
          if (mx === 'NODATA' && noAddress) {
            return { ...base, kind: 'unroutable', category: 'no_mail_host', message: `NODATA: the recipient domain ${asciiDomain} has no MX, A or AAAA record` };
          }
          return { ...base, kind: 'dns' };
        }
        return { ...base, kind: /timed out/i.test(error.message) ? 'timeout' : 'connection' };
      };

      /** A session set up on the best host that allows one, or the failure that ends the send. */
      const openSession = async (): Promise<{ connection: SMTPConnection; route: Route } | SendFailure> => {
        const withoutTls = new Set<string>();
        let lastSetupFailure: SetupFailed | null = null;
        let policy: StsPolicy | null = null;
        /** Hosts an enforce policy passed over: a send that ends without a session is deferred as mta_sts. */
        let refusedByPolicy = 0;
        const ended = (failure: SendFailure): SendFailure =>
          refusedByPolicy > 0 && failure.kind !== 'unroutable' && !failure.reply?.code
            ? { ...failure, category: 'mta_sts', message: `MTA-STS policy of ${asciiDomain} (enforce): ${failure.message}`.slice(0, 1_000) }
            : failure;
        let enforced = false;
        // The policy is looked up while the MX hosts are found and the first one connected to
        // (nothing is said to a host before the policy is known): a DNS outage costs one lookup
        // timeout per attempt, not two in a row.
        const policyLookup: Promise<{ policy: StsPolicy | null } | { error: Error }> = options.mtaSts
          ? options.mtaSts.policyFor(asciiDomain).then(
              (found) => ({ policy: found }),
              (error: Error) => ({ error }),
            )
          : Promise.resolve({ policy: null });
        let policyKnown = false;
        for (let tries = 0; tries < MAX_HOSTS; tries += 1) {
          let connected: MxConnection;
          try {
            connected = await connect(lastSetupFailure);
          } catch (error) {
            if (!(error instanceof SetupFailed)) return ended(routingFailure(error as MxConnectError));
            const failure = failureOf(error.failure, false, false);
            return ended({ ...failure, message: `${failure.message} (tried: ${skipped.join('; ')})`.slice(0, 1_000) });
          }
          open = { close: () => connected.socket.destroy() };
          if (stopped) {
            connected.socket.destroy();
            throw new CutShort(stopped);
          }
          const label = `${connected.hostname}[${connected.host}]`;
          if (!policyKnown) {
            const lookup = await policyLookup;
            progress();
            if (stopped) {
              connected.socket.destroy();
              throw new CutShort(stopped);
            }
            if ('error' in lookup) {
              // A policy seen before must not be skipped because the cache is out of reach: defer.
              connected.socket.destroy();
              return { kind: 'connection', category: 'mta_sts', reply: null, dataSent: false, interrupted: false, message: `MTA-STS policy cache unreadable: ${lookup.error.message}`.slice(0, 1_000) };
            }
            policy = lookup.policy;
            enforced = policy?.mode === 'enforce';
            policyKnown = true;
          }
          if (policy && !mxListed(policy, connected.hostname)) {
            options.mtaSts?.failed(policy, 'mx_not_listed', label);
            if (enforced) {
              // Closed before a word is said: the message never goes to a host the policy does not list.
              connected.socket.destroy();
              refusedByPolicy += 1;
              ignore.push(connected.host);
              skipped.push(`${label}: not an MX host the MTA-STS policy lists`);
              lastSetupFailure = policyRefusal();
              continue;
            }
          }
          try {
            const connection = await setUp(connected, !withoutTls.has(connected.host), enforced);
            if (stopped) {
              connection.close();
              throw new CutShort(stopped);
            }
            const tls = tlsUseOf(connection);
            if (policy && !enforced && tls.kind !== 'verified') {
              options.mtaSts?.failed(policy, tls.kind === 'none' ? 'tls_missing' : 'tls_invalid', `${label}: ${tls.kind === 'none' ? 'no TLS' : tls.problem}`);
            }
            return { connection, route: { host: connected.hostname, address: connected.host, port: connected.port, tls, skipped: [...skipped] } };
          } catch (error) {
            if (stopped || !(error instanceof SetupFailed)) throw error;
            const cause = error.failure;
            if (policy && enforced && error.inTlsHandshake) {
              // No second try in plaintext: the policy requires TLS with a valid certificate.
              const missing = /STARTTLS/.test(cause.message);
              options.mtaSts?.failed(policy, missing ? 'tls_missing' : 'tls_invalid', `${label}: ${cause.message}`);
              refusedByPolicy += 1;
              ignore.push(connected.host);
              skipped.push(`${label}: ${missing ? 'no STARTTLS' : 'TLS not verified'}, which the MTA-STS policy requires (${(cause.response ?? cause.message).replace(/\s+/g, ' ').trim()})`.slice(0, 300));
              // Not the host's reply (a 5xx to STARTTLS is no verdict on the message): temporary.
              lastSetupFailure = policyRefusal();
              continue;
            }
            if (error.inTlsHandshake && !withoutTls.has(connected.host)) {
              // The handshake failed, not the host: once more in plaintext, as opportunistic TLS allows.
              withoutTls.add(connected.host);
              skipped.push(`${label}: ${cause.message} (tried again without TLS)`.slice(0, 300));
              continue;
            }
            ignore.push(connected.host);
            skipped.push(`${label}: ${(cause.response ?? cause.message).replace(/\s+/g, ' ').trim()}`.slice(0, 300));
            lastSetupFailure = error;
          }
        }
        return ended({ kind: 'connection', reply: null, dataSent: false, interrupted: false, message: `no session with any of ${MAX_HOSTS} hosts tried: ${skipped.join('; ')}`.slice(0, 1_000) });
      };

      /** A pooled connection was set up for another domain of the site: this domain's MTA-STS
       *  enforce policy lets it carry the message only if its host is listed and its TLS verified. */
      const reuseAllowed = async (route: Route): Promise<boolean> => {
        if (!options.mtaSts) return true;
        let policy: StsPolicy | null;
        try {
          policy = await options.mtaSts.policyFor(asciiDomain);
        } catch {
          return false; // openSession defers on the same failure, with its reason
        }
        return policy?.mode !== 'enforce' || (route.tls.kind === 'verified' && mxListed(policy, route.host));
      };

      let lease: SiteLease | null = null;
      try {
        // Not raced against the deadline: a lease it left behind would hold its slot (entering is
        // bounded anyway: one DNS lookup, two short statements, at most HANDOFF_WAIT_MS).
        let entry = options.shaping ? await options.shaping.enter(asciiDomain, progress) : null;
        for (let refused = 0; entry?.kind === 'lease' && entry.lease.reused && !(await reuseAllowed(entry.lease.reused.route)); refused += 1) {
          // Closed, not pooled again; the next entry gets another idle connection or a new slot.
          entry.lease.finish('other', false);
          if (refused === 2 || !options.shaping) {
            return { ok: false, failure: { kind: 'deferred', reply: null, dataSent: false, interrupted: false, message: `deferred: the connections this engine holds to the site of ${asciiDomain} do not meet its MTA-STS policy`, retryInMs: 5_000 } };
          }
          entry = await options.shaping.enter(asciiDomain, progress);
        }
        if (entry?.kind === 'refused') return { ok: false, failure: entry.failure };
        lease = entry?.kind === 'lease' ? entry.lease : null;
        if (stopped) throw new CutShort(stopped);
        let reused = lease?.reused ?? null;
        if (reused) open = reused.connection;
        // At most twice: once more on a new connection when a reused one was lost before it
        // answered a word of the transaction (lostBeforeAnyReply, smtp-transaction.ts).
        for (;;) {
          // Finding and greeting a host is cut short by the deadline or an interrupt at once; the
          // transaction itself ends through its connection (closed), so that whether the data went
          // out is known.
          const session = reused ?? (await Promise.race([openSession(), cutShort]));
          if (!('connection' in session)) {
            await lease?.unreachable(session);
            lease?.finish(session.kind, false);
            return { ok: false, failure: session };
          }
          if (lease && !reused) lease.opened(session);
          const { connection, route } = session;
          const outcome = await runTransaction(connection, message, progress, deadline);
          if (!outcome.error) {
            open = null;
            if (lease) lease.finish('sent', !stopped && !deadline.passed());
            else connection.quit();
            return { ...sentResult(outcome.response), route };
          }
          // The server closed the pooled connection while it was idle, and the close was seen only
          // now (or after the RSET was answered): the message goes on a new connection on the same
          // slot, at once, rather than wait for the ladder's next step.
          if (reused && lostBeforeAnyReply(outcome) && !stopped && !deadline.passed() && lease?.replace()) {
            log.debug({ recipientDomain: domain, site: lease.site, error: outcome.error.message }, 'a reused connection was closed before it answered: the message goes on a new one on its slot');
            reused = null;
            continue;
          }
          lease?.finish(failureOf(outcome.error, outcome.dataSent, false).kind, false);
          connection.close();
          if (deadline.passed()) return deadline.failure(outcome.dataSent);
          return { ok: false, failure: { ...failureOf(outcome.error, outcome.dataSent, stopped === 'interrupt'), route } };
        }
      } catch (error) {
        if (stopped === 'deadline') return deadline.failure(false);
        if (stopped === 'interrupt') {
          return { ok: false, failure: { kind: 'other', reply: null, dataSent: false, interrupted: true, message: 'interrupted before the message was handed over' } };
        }
        log.error({ err: error, recipientDomain: domain }, 'direct delivery failed unexpectedly');
        return { ok: false, failure: { kind: 'other', reply: null, dataSent: false, interrupted: false, message: `${(error as Error).message}`.slice(0, 1_000) } };
      } finally {
        // A send that ended by an exception gives its slot back and closes what it opened.
        lease?.finish('other', false);
        deadline.clear();
        underWay.delete(interrupt);
      }
    },
    interrupt() {
      for (const interrupt of [...underWay]) interrupt();
      if (underWay.size > 0) log.warn('direct deliveries under way were interrupted');
    },
    async close() {
      for (const interrupt of [...underWay]) interrupt();
      await options.shaping?.close();
    },
  };
}
