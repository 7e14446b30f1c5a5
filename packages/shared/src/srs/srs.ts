// The Sender Rewriting Scheme (SRS, the Shevek/libsrs2 format) for mail an alias forwards to
// another domain. A receiver that checks SPF sees the forwarder's address as the envelope sender,
// so the forwarder writes its own domain there, with the original address folded into the local part:
//
//   someone@sender.test        -> SRS0=HHHHHHHH=TT=sender.test=someone@alias.test
//   SRS0=hhh=TT=orig=local@fwd -> SRS1=HHHHHHHH=fwd==hhh=TT=orig=local@alias.test   (mail forwarded twice)
//
// A bounce comes back to that address, and only an address this forwarder made (its hash) and made
// recently (its timestamp) is turned back into the original one: anything else would make the edge an
// open relay for whoever can write an SRS0 local part.
//
// - hash: HMAC-SHA1 with MAIL_SRS_SECRET over the lower-cased timestamp, domain and local part
//   joined with '=' (not run together: see hashWith), base64, its first HASH_LENGTH characters.
//   Lower-cased and compared without regard to case because relays on the way back may change the
//   case of an address (libsrs2 compares the same way);
//   eight characters keep about 42 bits after case folding (libsrs2's default four: about 21).
// - timestamp: days since the epoch modulo 1024, two base32 characters; accepted for MAX_AGE_DAYS.
// - SRS1: the first forwarder's domain and what followed its "SRS0" are kept as they are and
//   hashed again by us; the bounce goes back to the first forwarder, which checks its own hash.
// - a changed secret (MAIL_SRS_SECRET_PREVIOUS, docs/core.md "Changing the secret"): addresses are
//   made with the new secret only, and a hash made with either is accepted, so the bounces of mail
//   forwarded before the change still find their way back while the old secret is kept.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { MAX_ADDRESS_OCTETS } from '../addresses/normalize-address.ts';

export const HASH_LENGTH = 8;
export const MAX_AGE_DAYS = 21;
const TIMESTAMP_BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
const TIMESTAMP_PERIOD = 1024;
const DAY_MS = 86_400_000;
/** The separators libsrs2 accepts after SRS0/SRS1; we write '='. */
const SRS_PREFIX = /^srs([01])([=+-])/i;
/** Too short a secret makes the hash guessable offline from a handful of bounces. */
export const MIN_SECRET_LENGTH = 16;

export type SrsDecoded =
  /** An address this forwarder made, and recent enough: the address the mail goes back to. */
  | { status: 'valid'; address: string }
  /** SRS-shaped, but not ours or not intact: the hash does not match. */
  | { status: 'forged'; reason: string }
  | { status: 'expired'; ageDays: number }
  /** Not an SRS address at all. */
  | { status: 'not_srs' };

export interface SrsCodec {
  /** The envelope sender for mail forwarded from `forwardDomain`: `''` (the null sender) stays
   *  `''`, an address already in that domain and one that cannot be folded are kept. */
  rewrite(sender: string, forwardDomain: string, now?: Date): string;
  /** What an SRS local part received at one of our domains stands for. */
  decode(localPart: string, now?: Date): SrsDecoded;
}

export function looksLikeSrs(localPart: string): boolean {
  return SRS_PREFIX.test(localPart);
}

/** Characters no SRS address of ours can carry: the edge leaves a local part with any of them to
 *  the ordinary path, which refuses it (specials, controls, white space). */
const NOT_IN_SRS = /[\p{Cc}\p{Z}"\\(),:;<>@[\]]/u;

/** A local part the edge decodes as SRS (apps/mta's srs-recipient.ts); rewrite() makes no other. */
export function isSrsLocalPart(localPart: string): boolean {
  return looksLikeSrs(localPart) && localPart.isWellFormed() && !NOT_IN_SRS.test(localPart);
}

function dayNumber(now: Date): number {
  return Math.floor(now.getTime() / DAY_MS);
}

export function encodeTimestamp(now: Date): string {
  const day = dayNumber(now) % TIMESTAMP_PERIOD;
  return `${TIMESTAMP_BASE32[day >> 5]}${TIMESTAMP_BASE32[day & 31]}`;
}

/** Days since the timestamp was made, or null when it is not two base32 characters. */
function ageOf(timestamp: string, now: Date): number | null {
  if (timestamp.length !== 2) return null;
  const high = TIMESTAMP_BASE32.indexOf(timestamp[0]!.toUpperCase());
  const low = TIMESTAMP_BASE32.indexOf(timestamp[1]!.toUpperCase());
  if (high < 0 || low < 0) return null;
  const then = (high << 5) | low;
  return (dayNumber(now) - then + TIMESTAMP_PERIOD) % TIMESTAMP_PERIOD;
}

/** An SRS local part can carry anything a dot-atom local part can (RFC 5322 atext, UTF-8 beyond ASCII). */
function foldable(localPart: string): boolean {
  return localPart !== '' && !/[\s"\\(),:;<>@[\]\p{Cc}]/u.test(localPart);
}

/** Joined with '=', which no part but the last can hold (the decoders' patterns and rewrite() see to
 *  that), so the hash also fixes where each part ends: run together, as libsrs2 hashes them,
 *  `example.com` + `alice` and `example.co` + `malice` were one hash, and a bounce address seen
 *  once made the edge relay to addresses in other domains. */
function hashWith(secret: string, parts: readonly string[]): string {
  const joined = parts.map((part) => part.toLowerCase()).join('=');
  return createHmac('sha1', secret).update(joined, 'utf8').digest('base64').slice(0, HASH_LENGTH);
}

/** `secret` makes and checks addresses; `previousSecret` (a change of secret under way) only checks. */
export function createSrs(secret: string, previousSecret: string | null = null): SrsCodec {
  for (const given of [secret, previousSecret]) {
    if (given !== null && given.length < MIN_SECRET_LENGTH) throw new Error(`the SRS secret must be at least ${MIN_SECRET_LENGTH} characters`);
  }
  const checkedWith = previousSecret === null ? [secret] : [secret, previousSecret];
  const hash = (...parts: string[]): string => hashWith(secret, parts);
  const hashMatches = (given: string, ...parts: string[]): boolean => {
    const actual = Buffer.from(given.toLowerCase(), 'utf8');
    // Every secret is compared, so the time taken does not say which one matched.
    let matched = false;
    for (const candidate of checkedWith) {
      const expected = Buffer.from(hashWith(candidate, parts).toLowerCase(), 'utf8');
      if (actual.length === expected.length && timingSafeEqual(actual, expected)) matched = true;
    }
    return matched;
  };

  /** The SRS local part for local@domain. */
  const fold = (local: string, domain: string, now: Date): string => {
    const srs = SRS_PREFIX.exec(local);
    if (srs?.[1] === '0') {
      // SRS0<sep>hash=tt=domain=local@first: we keep what follows "SRS0" and name the first forwarder.
      const rest = local.slice(4);
      return `SRS1=${hash(domain, rest)}=${domain}=${rest}`;
    }
    if (srs?.[1] === '1') {
      // SRS1<sep>hash=first=rest@previous: the first forwarder and its part stay, the hash is ours.
      const parts = /^srs1[=+-][^=]*=([^=]+)=(.*)$/is.exec(local);
      if (parts) return `SRS1=${hash(parts[1]!, parts[2]!)}=${parts[1]}=${parts[2]}`;
    }
    const timestamp = encodeTimestamp(now);
    return `SRS0=${hash(timestamp, domain, local)}=${timestamp}=${domain}=${local}`;
  };

  return {
    rewrite(sender, forwardDomain, now = new Date()) {
      const at = sender.lastIndexOf('@');
      if (sender === '' || at <= 0) return sender;
      const local = sender.slice(0, at);
      const domain = sender.slice(at + 1);
      if (domain.toLowerCase() === forwardDomain.toLowerCase() || !foldable(local) || domain.includes('=')) return sender;
      const folded = fold(local, domain, now);
      // An address the edge would refuse to take back (an address literal folded into the local
      // part, past 254 octets) loses every bounce: the sender as it is at least still gets them.
      // The edge measures the address lower-cased, which can lengthen a non-ASCII one.
      const address = `${folded}@${forwardDomain}`;
      const octets = Math.max(Buffer.byteLength(address, 'utf8'), Buffer.byteLength(address.toLowerCase(), 'utf8'));
      return octets <= MAX_ADDRESS_OCTETS && isSrsLocalPart(folded) ? address : sender;
    },

    decode(localPart, now = new Date()) {
      const srs = SRS_PREFIX.exec(localPart);
      if (!srs) return { status: 'not_srs' };
      if (srs[1] === '1') {
        const parts = /^srs1[=+-]([^=]*)=([^=]+)=(.+)$/is.exec(localPart);
        if (!parts) return { status: 'forged', reason: 'malformed SRS1 address' };
        const [, given, first, rest] = parts as unknown as [string, string, string, string];
        if (!hashMatches(given, first, rest)) return { status: 'forged', reason: 'SRS1 hash does not match' };
        return { status: 'valid', address: `SRS0${rest}@${first}` };
      }
      const parts = /^srs0[=+-]([^=]*)=([^=]*)=([^=]+)=(.+)$/is.exec(localPart);
      if (!parts) return { status: 'forged', reason: 'malformed SRS0 address' };
      const [, given, timestamp, domain, local] = parts as unknown as [string, string, string, string, string];
      if (!hashMatches(given, timestamp, domain, local)) return { status: 'forged', reason: 'SRS0 hash does not match' };
      const age = ageOf(timestamp, now);
      if (age === null) return { status: 'forged', reason: 'SRS0 timestamp is not base32' };
      if (age > MAX_AGE_DAYS) return { status: 'expired', ageDays: age };
      return { status: 'valid', address: `${local}@${domain}` };
    },
  };
}
