// RCPT TO an SRS address in one of our domains: a bounce (or a reply) coming back for mail an alias
// forwarded with an SRS envelope sender (docs/mta.md, "SRS recipients"). With MAIL_SRS_SECRET set, an
// address this forwarder made and made recently is accepted with one target, the original sender;
// its envelope sender (<> for a bounce) is kept. A forged or expired one is 550 5.1.1, never passed
// to the domain's catch-all: an SRS address that does not verify names no mailbox, and anything
// else would make the edge an open relay for whoever writes SRS0 local parts. It is counted as
// srs_forged / srs_expired, and its log line says what did not verify. Whether the domain is
// ours is the same live lookup as for any RCPT, under the same deadline: its failure is 451 4.3.0.
// SRS addresses are often longer than the 64 octets of an ordinary local part (RFC 5321 4.5.3.1.1):
// only the whole address's limit applies to them, the hash proves the rest.
import {
  InvalidAddressError,
  isSrsLocalPart,
  MAX_ADDRESS_OCTETS,
  type NormalizedAddress,
  needsSmtpUtf8,
  normalizeDomain,
  type RecipientResolution,
  type SrsCodec,
} from '@postern/shared';
import { badAddress, lookupFailed, relayDenied, smtpUtf8Required, srsRefused, unknownRecipient } from '../smtp/replies.ts';
import type { AcceptedRecipient, SrsRecipients, VerifyOptions } from './verify-recipient.ts';
import { withDeadline } from './verify-recipient.ts';

export function srsRecipients(srs: SrsCodec, now: () => Date = () => new Date()): SrsRecipients {
  return async (raw: string, options: VerifyOptions): Promise<AcceptedRecipient | null> => {
    const at = raw.lastIndexOf('@');
    if (at <= 0) return null;
    const local = raw.slice(0, at);
    // A local part no SRS address of ours could have (controls, spaces, specials, broken Unicode) is
    // left to the ordinary path, which refuses it naming the problem and never echoes it raw.
    if (!isSrsLocalPart(local)) return null;
    const rawDomain = raw.slice(at + 1);
    if (rawDomain.startsWith('[')) throw relayDenied(raw);
    if (needsSmtpUtf8(local) && !options.smtpUtf8) throw smtpUtf8Required(raw);
    let domain: string;
    try {
      domain = normalizeDomain(rawDomain);
    } catch (error) {
      if (error instanceof InvalidAddressError) throw badAddress(raw, error.reason);
      throw error;
    }
    const localPart = local.toLowerCase();
    const address: NormalizedAddress = { localPart, domain, address: `${localPart}@${domain}` };
    if (Buffer.byteLength(address.address, 'utf8') > MAX_ADDRESS_OCTETS) {
      throw badAddress(raw, `address is longer than ${MAX_ADDRESS_OCTETS} octets (RFC 5321 4.5.3.1.3)`);
    }
    let resolution: RecipientResolution;
    try {
      resolution = await withDeadline(options.resolve(address), options.lookupTimeoutMs);
    } catch (error) {
      throw lookupFailed(error);
    }
    if (resolution.status === 'not_local') throw relayDenied(address.address);
    // The case the sender wrote is what was hashed and what the original address had.
    const decoded = srs.decode(local, now());
    if (decoded.status === 'expired') throw srsRefused(address.address, 'srs_expired', `SRS0 address is ${decoded.ageDays} days old`);
    if (decoded.status !== 'valid') throw srsRefused(address.address, 'srs_forged', decoded.status === 'forged' ? decoded.reason : 'not an SRS address');
    const target = decoded.address;
    const targetAt = target.lastIndexOf('@');
    try {
      return { address, targets: [`${target.slice(0, targetAt)}@${normalizeDomain(target.slice(targetAt + 1))}`] };
    } catch (error) {
      // Our own hash over a domain no relay could reach: nothing to send it back to.
      if (error instanceof InvalidAddressError) throw unknownRecipient(address.address);
      throw error;
    }
  };
}
