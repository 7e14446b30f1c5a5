// RCPT TO, decided: address normalised -> domain local? (else 554 5.7.1) -> alias enabled, or the
// catch-all? (else 550 5.1.1) -> its targets. The lookup runs under a deadline; every failure of
// it — an error, a timeout, PostgreSQL gone — is 451 4.3.0, never a 5xx (stale-alias-table, docs/incidents.md).
import {
  InvalidAddressError,
  type NormalizedAddress,
  needsSmtpUtf8,
  normalizeAddress,
  type RecipientResolution,
} from '@postern/shared';
import {
  badAddress,
  type EdgeReply,
  lookupFailed,
  relayDenied,
  smtpUtf8Required,
  unknownRecipient,
} from '../smtp/replies.ts';

export type ResolveRecipient = (address: NormalizedAddress) => Promise<RecipientResolution>;

export interface AcceptedRecipient {
  address: NormalizedAddress;
  targets: string[];
}

/** Accepts a valid SRS bounce address (srs-recipient.ts); null: the address is not SRS. */
export type SrsRecipients = (raw: string, options: VerifyOptions) => Promise<AcceptedRecipient | null>;

export interface VerifyOptions {
  /** SMTPUTF8 was declared on MAIL FROM (RFC 6531). */
  smtpUtf8: boolean;
  lookupTimeoutMs: number;
  resolve: ResolveRecipient;
  /** Set with MAIL_SRS_SECRET; unset, an SRS address is looked up like any other. */
  srs?: SrsRecipients | undefined;
}

export class LookupTimeoutError extends Error {
  constructor(timeoutMs: number) {
    super(`recipient lookup gave no answer within ${timeoutMs} ms`);
    this.name = 'LookupTimeoutError';
  }
}

/** Resolves with `work` or rejects with LookupTimeoutError, whichever is first. */
export async function withDeadline<T>(work: Promise<T>, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new LookupTimeoutError(timeoutMs)), timeoutMs);
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** The address as the client wrote it (smtp-server has already decoded xn-- domains to Unicode). */
export function parseRecipient(raw: string, smtpUtf8: boolean): NormalizedAddress {
  const at = raw.lastIndexOf('@');
  if (at > 0 && raw.slice(at + 1).startsWith('[')) {
    // An address literal names a host, not a domain of ours.
    throw relayDenied(raw);
  }
  if (at > 0 && needsSmtpUtf8(raw.slice(0, at)) && !smtpUtf8) throw smtpUtf8Required(raw);
  try {
    return normalizeAddress(raw);
  } catch (error) {
    if (error instanceof InvalidAddressError) throw badAddress(raw, error.reason);
    throw error;
  }
}

export function replyForResolution(address: NormalizedAddress, resolution: RecipientResolution): EdgeReply | null {
  switch (resolution.status) {
    case 'accepted':
      return null;
    case 'not_local':
      return relayDenied(address.address);
    case 'no_such_alias':
    case 'alias_disabled':
    case 'no_targets':
      return unknownRecipient(address.address);
  }
}

/** The targets of an accepted recipient; throws the EdgeReply for any other outcome. */
export async function verifyRecipient(raw: string, options: VerifyOptions): Promise<AcceptedRecipient> {
  const bounce = options.srs ? await options.srs(raw, options) : null;
  if (bounce) return bounce;
  const address = parseRecipient(raw, options.smtpUtf8);
  let resolution: RecipientResolution;
  try {
    resolution = await withDeadline(options.resolve(address), options.lookupTimeoutMs);
  } catch (error) {
    throw lookupFailed(error);
  }
  const refusal = replyForResolution(address, resolution);
  if (refusal) throw refusal;
  return { address, targets: (resolution as Extract<RecipientResolution, { status: 'accepted' }>).targets };
}
