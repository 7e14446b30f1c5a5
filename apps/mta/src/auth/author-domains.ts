// DMARC of a message whose From names more than one domain. mailauth, following RFC 9989 5.3.1,
// evaluates no DMARC at all then (dmarc=none): "From: ceo@bank.example" followed by a second
// From field, or a second mailbox in the sender's own domain, would carry a spoof of a p=reject
// domain past MAIL_INBOUND_AUTH_POLICY=enforce. So each Author Domain is evaluated on its own, with
// the message's SPF and DKIM passes, and the strictest outcome stands for the message (RFC 7489
// 6.6.1: "apply the most strict policy selected among the checks that fail"): a pass of one domain
// does not vouch for another the same From names.
// The same holds for the From as a mail reader shows it. mailauth reads the addresses as sent:
// an encoded word (RFC 2047) in one ("ceo@=?utf-8?q?bank.example?=") is a domain of no policy
// (dmarc=none), a whole address encoded ("=?utf-8?q?ceo=40bank.example?=") no address at all,
// while mailparser, and so every reader behind an alias, shows ceo@bank.example: the spoof passed
// enforce. So the domains of the From addresses as mailparser reads them
// (data/parse-headers.ts fromAddresses) are Author Domains as well.
/// <reference path="./mailauth-author-domain.d.ts" />
import type { AuthenticateResult, DMARCResult } from 'mailauth';
import { dmarc } from 'mailauth';
import { getAuthorDomain } from 'mailauth/lib/dmarc/author-domain.js';
import type { MailauthResolver } from './auth-resolver.ts';

/** Author Domains evaluated at most; past it the outcome is unknown (each costs a DMARC Tree Walk). */
export const MAX_AUTHOR_DOMAINS = 10;

export type AuthorDomainsDmarc =
  | { kind: 'each'; results: DMARCResult[] }
  /** More Author Domains than MAX_AUTHOR_DOMAINS: none evaluated. */
  | { kind: 'too-many'; domains: number };

const SEVERAL_AUTHORS = new Set(['multiple-from-fields', 'multiple-author-domains', 'invalid-author-domain']);

/** The Author Domains of these addresses (mailauth's normalisation: lower case, A-labels), no lookups. */
function domainsOf(addresses: readonly string[]): string[] {
  const author = getAuthorDomain([...addresses], 1);
  return 'reason' in author ? author.domains : [author.authorDomain];
}

/** The DMARC result of each Author Domain, or null when mailauth's own evaluation stands: one
 *  Author Domain, the one a reader sees too (or none at all). `shownFrom`: the From addresses as a
 *  mail reader shows them. */
export async function dmarcOfEachAuthorDomain(
  result: AuthenticateResult,
  resolver: MailauthResolver,
  shownFrom: readonly string[] = [],
): Promise<AuthorDomainsDmarc | null> {
  const asSent = domainsOf(([] as string[]).concat(result.dkim?.headerFrom ?? []));
  const asShown = shownFrom.length === 0 ? [] : domainsOf(shownFrom).filter((domain) => !asSent.includes(domain));
  const severalAuthors = !result.dmarc && result.dmarcSkipReason !== undefined && SEVERAL_AUTHORS.has(result.dmarcSkipReason);
  if (!severalAuthors && asShown.length === 0) return null;
  const authorDomains = [...asSent, ...asShown];
  if (authorDomains.length === 0) return null;
  if (authorDomains.length > MAX_AUTHOR_DOMAINS) return { kind: 'too-many', domains: authorDomains.length };
  // What mailauth's authenticate() gives DMARC: the SPF domain if it passed, the passing signatures.
  const spfDomains = result.spf && result.spf.status.result === 'pass' && result.spf.domain ? [result.spf.domain] : [];
  const dkimDomains = (result.dkim.results ?? [])
    .filter((signature) => signature.status?.result === 'pass' && typeof signature.signingDomain === 'string')
    .map((signature) => ({ id: signature.id, domain: signature.signingDomain as string, aligned: signature.status.aligned, underSized: signature.status.underSized }));
  const results: DMARCResult[] = [];
  for (const domain of authorDomains) {
    const evaluated = await dmarc({ headerFrom: domain, spfDomains, dkimDomains, arcResult: result.arc || undefined, resolver: resolver as never });
    if (evaluated) results.push(evaluated);
  }
  return { kind: 'each', results };
}

const severity = (outcome: DMARCResult): number => {
  const result = outcome.status?.result;
  if (result === 'fail') return outcome.policy === 'reject' ? 5 : outcome.policy === 'quarantine' ? 3 : 2;
  if (result === 'temperror') return 4;
  return result === 'pass' ? 1 : 0;
};

/** The outcome that stands for the message: a certain p=reject failure first, then an unknown one, then the rest. */
export function strictest(results: readonly DMARCResult[]): DMARCResult | null {
  let chosen: DMARCResult | null = null;
  for (const outcome of results) if (chosen === null || severity(outcome) > severity(chosen)) chosen = outcome;
  return chosen;
}
