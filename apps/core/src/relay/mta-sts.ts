// MTA-STS (RFC 8461) for direct delivery: a recipient domain that publishes a policy says which of
// its MX hosts may receive its mail and that they must be reached over TLS with a certificate
// valid for the MX name. mailauth (pinned, by nodemailer's authors) does the protocol: the
// `_mta-sts.<domain>` TXT record (through Postern's one mail resolver), the HTTPS fetch of
// `https://mta-sts.<domain>/.well-known/mta-sts.txt` (certificate checked against the trusted
// roots, 64 KiB and a time limit, only a 2xx answer taken: redirects are refused), the policy's
// syntax, the MX patterns (wildcards of one left-most label) and when a cached policy must still
// be applied. What Postern adds: the cache, in PostgreSQL (mail.mta_sts_policies) so every engine
// and every restart applies a policy once any engine has seen it — the RFC's defence against an
// attacker who blocks the next fetch — and the decision per send (mx-relay.ts asks `policyFor`).
// mailauth's lax mode is used: a policy served a little off the RFC's letter (a Content-Type
// other than text/plain, field names in capitals) is still honoured, which protects more mail
// than dropping it; and it keeps applying an expired enforce/testing policy while its fetch keeps
// failing, rather than falling back to no policy.
// The policy host is reached at whatever address `mta-sts.<domain>` resolves to, before any MX is
// looked at: with MAIL_MX_PRIVATE_ADDRESSES=refuse (the default) an address that the MX connection
// would refuse (loopback, private, link-local, carrier-grade NAT, unique-local, this machine's own;
// mx-connect's own check, so both refuse the same set) is not connected to either — a domain cannot
// point the engine's HTTPS request at an internal service. When nothing else is left the lookup
// fails with EPRIVATEADDR: counted and logged as a failed lookup, a cached policy still applies.
// DANE (TLSA, RFC 7672) is not done: it needs DNSSEC-validated answers, which Node's resolver
// cannot give (docs/core.md, "DANE").
import type { Logger, Pool, Registry } from '@postern/shared';
import { childLogger, type MailRecordType, type MailResolver, prometheus } from '@postern/shared';
import { getPolicy, validateMx } from 'mailauth/lib/mta-sts.js';
import { isInvalid } from 'mx-connect/lib/tools.js';

export type StsMode = 'enforce' | 'testing';

/** A policy a send follows (mode none is no policy: null). */
export interface StsPolicy {
  domain: string;
  id: string;
  mode: StsMode;
  /** MX patterns: a host name, or `*.` and a domain (one left-most label). */
  mx: readonly string[];
}

/** What mailauth's getPolicy keeps between calls (its `knownPolicy`), as stored. */
export interface StoredPolicy {
  id?: string | false;
  version?: string;
  mode: 'enforce' | 'testing' | 'none';
  maxAge?: number;
  mx?: string[];
  expires?: string;
}

export interface MtaStsStore {
  get(domain: string): Promise<StoredPolicy | null>;
  set(domain: string, policy: StoredPolicy): Promise<void>;
}

/** Why a host or a session does not satisfy a policy. */
export type StsFailure = 'mx_not_listed' | 'tls_missing' | 'tls_invalid';

/** How a policy lookup went: fetched (a new or changed policy), unchanged (the cached one, its id
 *  still published), none (the domain publishes no policy), failed_cached (the TXT lookup or fetch
 *  failed: the cached policy applies), failed_none (failed with nothing cached: no policy). */
export type LookupOutcome = 'fetched' | 'unchanged' | 'none' | 'failed_cached' | 'failed_none';

export interface MtaStsMetrics {
  lookups: prometheus.Counter<'outcome'>;
  failures: prometheus.Counter<'mode' | 'reason'>;
}

const LOOKUP_OUTCOMES: readonly LookupOutcome[] = ['fetched', 'unchanged', 'none', 'failed_cached', 'failed_none'];
const FAILURES: readonly StsFailure[] = ['mx_not_listed', 'tls_missing', 'tls_invalid'];

export function createMtaStsMetrics(registry: Registry): MtaStsMetrics {
  const metrics: MtaStsMetrics = {
    lookups: new prometheus.Counter({
      name: 'mail_mta_sts_policy_lookups_total',
      help: "MTA-STS policy lookups of recipient domains (direct delivery), by outcome: fetched, unchanged, none, failed_cached (the cached policy applied), failed_none (nothing cached: sent without a policy).",
      labelNames: ['outcome'],
      registers: [registry],
    }),
    failures: new prometheus.Counter({
      name: 'mail_mta_sts_policy_failures_total',
      help: 'MX hosts or sessions that did not satisfy a recipient domain\'s MTA-STS policy, by mode (enforce: refused, the attempt deferred; testing: delivered anyway) and reason.',
      labelNames: ['mode', 'reason'],
      registers: [registry],
    }),
  };
  for (const outcome of LOOKUP_OUTCOMES) metrics.lookups.inc({ outcome }, 0);
  for (const mode of ['enforce', 'testing']) for (const reason of FAILURES) metrics.failures.inc({ mode, reason }, 0);
  return metrics;
}

/** Whether an MX host name is one the policy lists (mailauth's matching: exact, or `*.` plus one label). */
export function mxListed(policy: Pick<StsPolicy, 'mode' | 'mx'>, host: string): boolean {
  return validateMx(host, { mode: policy.mode, mx: [...policy.mx] }).valid;
}

export interface MtaStsOptions {
  resolver: MailResolver;
  store: MtaStsStore;
  /** MAIL_MTA_STS_PORT: 443 on the internet. */
  port: number;
  /** The policy fetch's own time limit (RFC 8461 suggests a minute at most). */
  timeoutMs: number;
  /** MAIL_MX_PRIVATE_ADDRESSES: whether the policy host may be at an address the MX connection
   *  refuses when it is 'refuse' (loopback, private, link-local, ...). */
  privateAddresses: 'refuse' | 'allow';
  logger: Logger;
  metrics?: MtaStsMetrics;
}

export interface MtaSts {
  /** The policy a send to this domain (ASCII, lower case) follows; null: none. Throws only when
   *  the cache cannot be read, so that a policy already seen is never skipped: the send is then
   *  deferred. */
  policyFor(domain: string): Promise<StsPolicy | null>;
  /** Count and log a host or session that fails the policy (enforce: refused; testing: used). */
  failed(policy: StsPolicy, reason: StsFailure, detail: string): void;
}

const TYPES: readonly string[] = ['A', 'AAAA', 'TXT'];

/** What is kept: no error object, nothing mailauth may add later. */
function storable(policy: StoredPolicy): StoredPolicy {
  const { id, version, mode, maxAge, mx, expires } = policy;
  return { id, version, mode, maxAge, mx, expires };
}

export function createMtaSts(options: MtaStsOptions): MtaSts {
  const log = childLogger(options.logger, { component: 'mta-sts' });
  /** One lookup per domain at a time in this engine: concurrent sends share it. */
  const inFlight = new Map<string, Promise<StsPolicy | null>>();

  // mailauth asks for TXT, A and AAAA; answers go through the mail resolver (MAIL_DNS_SERVERS) with
  // the codes mailauth reads (ENOTFOUND, ENODATA: no such record).
  // A and AAAA answers are address strings, TXT answers lists of strings: what mailauth's type says.
  // One resolver per lookup: it remembers the policy host's addresses it refused, so that when
  // mailauth's last address lookup (A, then AAAA if A left nothing) ends empty the lookup fails
  // as refused rather than looking like a domain without a policy host.
  const resolverForOneLookup = () => {
    const refused: string[] = [];
    return async (name: string, type: string): Promise<string[] | string[][]> => {
      if (!TYPES.includes(type)) throw Object.assign(new Error(`DNS record type ${type} is not looked up`), { code: 'ENOTIMP' });
      if (type === 'TXT' || options.privateAddresses === 'allow') return (await options.resolver.resolve(name, type as MailRecordType)) as string[][];
      let addresses: string[] = [];
      try {
        addresses = (await options.resolver.resolve(name, type as MailRecordType)) as string[];
      } catch (error) {
        if (type === 'A' || refused.length === 0) throw error;
      }
      const usable = addresses.filter((address) => {
        const why = isInvalid({ dnsOptions: { blockLocalAddresses: true } }, address);
        if (why) refused.push(`${address}: ${why}`);
        return !why;
      });
      if (usable.length === 0 && type === 'AAAA' && refused.length > 0) {
        throw Object.assign(new Error(`policy host ${name} resolves only to addresses refused by MAIL_MX_PRIVATE_ADDRESSES=refuse (${refused.join('; ')})`), {
          code: 'EPRIVATEADDR',
        });
      }
      return usable;
    };
  };

  const lookUp = async (domain: string): Promise<StsPolicy | null> => {
    const known = await options.store.get(domain);
    const result = await getPolicy(domain, known, { resolver: resolverForOneLookup(), port: options.port, timeout: options.timeoutMs });
    const { policy, status } = result;
    const error = policy.error as (Error & { code?: string }) | undefined;
    const outcome: LookupOutcome =
      status === 'found' ? 'fetched' : status === 'renewed' ? 'unchanged' : status === 'not_found' ? 'none' : known && policy.id === known.id && policy.mode === known.mode && policy.mode !== 'none' ? 'failed_cached' : 'failed_none';
    options.metrics?.lookups.inc({ outcome });
    if (outcome === 'failed_cached' || outcome === 'failed_none') {
      log.warn(
        { recipientDomain: domain, outcome, err: error ? { message: error.message, code: error.code } : undefined, cachedMode: known?.mode ?? null },
        outcome === 'failed_cached' ? 'MTA-STS policy could not be looked up: the cached policy applies' : 'MTA-STS policy could not be looked up and none is cached: sending without a policy',
      );
    } else if (outcome === 'fetched') {
      log.info({ recipientDomain: domain, policyId: policy.id, mode: policy.mode, mx: policy.mx, maxAge: policy.maxAge, warnings: result.warnings }, 'MTA-STS policy fetched');
    }
    // A new policy, or a placeholder for an id whose fetch failed (retried after mailauth's hour):
    // kept for every engine. An unchanged or reused one is already stored.
    if (policy.id && (outcome === 'fetched' || (outcome === 'failed_none' && policy.mode === 'none'))) {
      try {
        await options.store.set(domain, storable(policy as StoredPolicy));
      } catch (storeError) {
        log.error({ err: storeError, recipientDomain: domain }, 'MTA-STS policy could not be cached; it applies to this send');
      }
    }
    if (!policy.id || policy.mode === 'none' || !Array.isArray(policy.mx)) return null;
    return { domain, id: policy.id, mode: policy.mode, mx: policy.mx };
  };

  return {
    policyFor(domain) {
      const running = inFlight.get(domain);
      if (running) return running;
      const lookup = lookUp(domain).finally(() => inFlight.delete(domain));
      inFlight.set(domain, lookup);
      return lookup;
    },
    failed(policy, reason, detail) {
      options.metrics?.failures.inc({ mode: policy.mode, reason });
      const fields = { recipientDomain: policy.domain, policyId: policy.id, mode: policy.mode, reason, detail };
      if (policy.mode === 'enforce') log.warn(fields, 'MTA-STS policy not satisfied: host refused');
      else log.warn(fields, 'MTA-STS policy (testing) not satisfied: delivering all the same');
    },
  };
}

const SELECT_POLICY_SQL = 'SELECT policy FROM mail.mta_sts_policies WHERE domain = $1';
const UPSERT_POLICY_SQL = `
INSERT INTO mail.mta_sts_policies (domain, mode, expires_at, policy)
VALUES ($1, $2, $3, $4)
ON CONFLICT (domain) DO UPDATE SET mode = EXCLUDED.mode, expires_at = EXCLUDED.expires_at, policy = EXCLUDED.policy, updated_at = now()`;

/** The cache in PostgreSQL: one row per domain, shared by every engine. */
export function createPgMtaStsStore(pool: Pick<Pool, 'query'>): MtaStsStore {
  return {
    async get(domain) {
      const { rows } = await pool.query<{ policy: string }>(SELECT_POLICY_SQL, [domain]);
      const text = rows[0]?.policy;
      if (!text) return null;
      try {
        return JSON.parse(text) as StoredPolicy;
      } catch {
        return null;
      }
    },
    async set(domain, policy) {
      const expires = Number.isNaN(Date.parse(policy.expires ?? '')) ? new Date().toISOString() : policy.expires;
      await pool.query(UPSERT_POLICY_SQL, [domain, policy.mode, expires, JSON.stringify(policy)]);
    },
  };
}
