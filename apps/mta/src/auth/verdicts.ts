// What the edge keeps of mailauth's answer: one verdict per method (and per DKIM signature), the
// DMARC policy that applied, and the Authentication-Results header (RFC 8601) naming the edge.
// Everything that comes from the message or the sender (domains, selectors, the sender's address,
// mailauth's comments quoting them) goes through storableText: no CR/LF can end the header early,
// no NUL or broken UTF-16 reaches PostgreSQL, and no entry grows past one line of a header.
import { storableText } from '@postern/shared';
import type { AuthenticateResult } from 'mailauth';
import { type AuthorDomainsDmarc, MAX_AUTHOR_DOMAINS, strictest } from './author-domains.ts';

export const AUTH_METHODS = ['spf', 'dkim', 'dmarc', 'arc'] as const;
export type AuthMethod = (typeof AUTH_METHODS)[number];

/** RFC 8601 result keywords (2.7), the ones mailauth gives for these four methods. */
export const AUTH_VERDICTS = ['pass', 'fail', 'softfail', 'neutral', 'none', 'temperror', 'permerror', 'policy'] as const;
export type AuthVerdict = (typeof AUTH_VERDICTS)[number];

export type DmarcPolicy = 'none' | 'quarantine' | 'reject';

export interface DkimVerdict {
  result: AuthVerdict;
  /** The signature's d= (null when the message has no signature). */
  domain: string | null;
}

/** Stored as mail.messages.auth_verdicts (jsonb) and read by the enforce decision (decision.ts). */
export interface AuthVerdicts {
  spf: AuthVerdict;
  /** One entry per DKIM-Signature, in the order of the header; [{none}] for none. */
  dkim: DkimVerdict[];
  dmarc: AuthVerdict;
  /** The policy the DMARC record applies to this From domain (after sp/np and t=y), or null without one. */
  dmarcPolicy: DmarcPolicy | null;
  /** The From domain DMARC evaluated (header.from), or null. */
  dmarcDomain: string | null;
  arc: AuthVerdict;
  /** DKIM-Signature fields past MAX_SIGNATURES_VERIFIED: not verified (dkim=policy) and not listed in `dkim`. */
  dkimNotVerified?: number;
  /** Set when the evaluation did not finish by itself: its deadline passed, or mailauth threw. */
  incomplete?: 'deadline' | 'error';
}

export interface InboundAuthResult {
  verdicts: AuthVerdicts;
  /** The header field as prepended to the stored message, CRLF-terminated. */
  header: string;
  /** The field's value (what follows "Authentication-Results: "), for mail.messages.auth_results. */
  value: string;
}

/** One entry of the header, at most this long: well within a header line of 998 octets. */
const MAX_ENTRY_CHARS = 900;
const MAX_DOMAIN_CHARS = 255;
/**
 * DKIM-Signature fields verified per message, from the top (mailauth's maxSignatures, our patch:
 * docs/library-patches.md); each one past it is dkim=policy, verified by no one. Every signature
 * costs a key lookup and every distinct l=/c=/a= a pass of its own over the body: without a limit
 * a 20 MB message with 100 signatures held the event loop for over 5 s. Real mail carries a few
 * (author, ESP, mailing list). The same number is listed one by one in the header and verdicts,
 * so every verdict the enforce decision reads (decision.ts) is in them.
 */
export const MAX_SIGNATURES_VERIFIED = 20;
/** mailauth's lenient mode reports a body changed after signing as dkim=neutral with this comment;
 *  it is a PERMFAIL (RFC 6376 6.1.3 step 3), which RFC 8601 2.7.1 reports as dkim=fail. (Its strict
 *  mode does, but also refuses records with syntax slips that the lenient mode lets pass: for a
 *  verdict that may refuse mail, the lenient reading is the safer one.) */
const BODY_HASH_MISMATCH = 'body hash did not verify';

function verdictOf(result: unknown): AuthVerdict {
  // mailauth's older spelling of temperror (BIMI); anything unforeseen is not a pass.
  if (result === 'temperr') return 'temperror';
  return (AUTH_VERDICTS as readonly unknown[]).includes(result) ? (result as AuthVerdict) : 'permerror';
}

function domainOf(value: unknown): string | null {
  return typeof value === 'string' && value !== '' ? storableText(value, { maxChars: MAX_DOMAIN_CHARS }) : null;
}

function policyOf(value: unknown): DmarcPolicy | null {
  return value === 'none' || value === 'quarantine' || value === 'reject' ? value : null;
}

/** One method's entry of the header, on one line whatever the sender put into it. */
function entry(text: string): string {
  return storableText(text.replace(/\r\n[ \t]+/g, ' '), { maxChars: MAX_ENTRY_CHARS }).trim();
}

/** authserv-id (RFC 8601 2.5): the edge's name, as a token. The edge removes the fields of received
 *  mail that claim it (data/forged-auth-results.ts), whether or not it writes one of its own. */
export function authservId(hostname: string): string {
  return hostname.replace(/[^\x21-\x7e]|[()<>@,;:\\"/[\]?=]/g, '?').slice(0, 255) || 'unknown';
}

export function authResultsHeader(hostname: string, entries: readonly string[]): { header: string; value: string } {
  const value = `${authservId(hostname)};${entries.length === 0 ? ' none' : `\r\n\t${entries.join(';\r\n\t')}`}`;
  return { value, header: `Authentication-Results: ${value}\r\n` };
}

/**
 * The verdicts of a finished evaluation. `temporaryFailures` counts the lookups that failed without
 * an answer: mailauth reports every ARC failure as arc=fail, one caused by DNS included, and a
 * failure that may be DNS's is not a verdict on the chain. `authors`: the DMARC of each Author
 * Domain when the From names several (author-domains.ts).
 */
export function summarize(
  result: AuthenticateResult,
  hostname: string,
  temporaryFailures: number,
  authors: AuthorDomainsDmarc | null = null,
): InboundAuthResult {
  const entries: string[] = [];
  const allSignatures = result.dkim?.results ?? [];
  const signatures = allSignatures.slice(0, MAX_SIGNATURES_VERIFIED);
  const notVerified = allSignatures.length - signatures.length;
  const dkim: DkimVerdict[] = [];
  for (const signature of signatures) {
    const bodyChanged = signature.status?.result === 'neutral' && signature.status.comment === BODY_HASH_MISMATCH;
    dkim.push({ result: bodyChanged ? 'fail' : verdictOf(signature.status?.result), domain: domainOf(signature.signingDomain) });
    if (typeof signature.info !== 'string') continue;
    entries.push(entry(bodyChanged ? signature.info.replace(/^dkim=neutral\b/, 'dkim=fail') : signature.info));
  }
  if (dkim.length === 0) {
    dkim.push({ result: 'none', domain: null });
    entries.push('dkim=none');
  }
  if (notVerified > 0) entries.push(`dkim=policy (${notVerified} more signatures not verified: at most ${MAX_SIGNATURES_VERIFIED} are)`);

  const spf = result.spf ? verdictOf(result.spf.status?.result) : 'none';
  if (result.spf && typeof result.spf.info === 'string') entries.push(entry(result.spf.info));

  let arc: AuthVerdict = result.arc ? verdictOf(result.arc.status?.result) : 'none';
  if (arc === 'fail' && temporaryFailures > 0) {
    arc = 'temperror';
    entries.push('arc=temperror (DNS failure)');
  } else if (result.arc && typeof result.arc.info === 'string') entries.push(entry(result.arc.info));

  let dmarc: AuthVerdict = 'none';
  let dmarcPolicy: DmarcPolicy | null = null;
  let dmarcDomain: string | null = null;
  // Several Author Domains, or one a reader sees that mailauth did not (author-domains.ts), come
  // before mailauth's own result, which then covered only part of the From.
  const why = entry(result.dmarcSkipReason ?? 'encoded words in the From address');
  if (authors?.kind === 'too-many') {
    dmarc = 'temperror';
    entries.push(`dmarc=temperror (${why}: ${authors.domains} author domains, at most ${MAX_AUTHOR_DOMAINS} are evaluated)`);
  } else if (authors?.kind === 'each' && authors.results.length > 0) {
    // One entry each, the strictest stands for the message.
    for (const outcome of authors.results) {
      if (typeof outcome.info === 'string') entries.push(entry(outcome.info.replace(/^dmarc=\S+/, (keyword) => `${keyword} (${why}: each author domain evaluated)`)));
    }
    const standing = strictest(authors.results)!;
    dmarc = verdictOf(standing.status?.result);
    dmarcPolicy = policyOf(standing.policy);
    dmarcDomain = domainOf(standing.status?.header?.from);
  } else if (result.dmarc) {
    dmarc = verdictOf(result.dmarc.status?.result);
    if (typeof result.dmarc.info === 'string') entries.push(entry(result.dmarc.info));
    dmarcPolicy = policyOf(result.dmarc.policy);
    dmarcDomain = domainOf(result.dmarc.status?.header?.from);
  } else if (result.dmarcSkipReason) entries.push(`dmarc=none (${entry(result.dmarcSkipReason)})`);

  const verdicts: AuthVerdicts = { spf, dkim, dmarc, dmarcPolicy, dmarcDomain, arc };
  if (notVerified > 0) verdicts.dkimNotVerified = notVerified;
  return { verdicts, ...authResultsHeader(hostname, entries) };
}

/** The verdicts when the evaluation gave nothing: every method unknown for now. */
export function unknownVerdicts(hostname: string, why: 'deadline' | 'error'): InboundAuthResult {
  const comment = why === 'deadline' ? 'evaluation deadline passed' : 'evaluation failed';
  const verdicts: AuthVerdicts = {
    spf: 'temperror',
    dkim: [{ result: 'temperror', domain: null }],
    dmarc: 'temperror',
    dmarcPolicy: null,
    dmarcDomain: null,
    arc: 'temperror',
    incomplete: why,
  };
  const entries = AUTH_METHODS.map((method) => `${method}=temperror (${comment})`);
  return { verdicts, ...authResultsHeader(hostname, entries) };
}
