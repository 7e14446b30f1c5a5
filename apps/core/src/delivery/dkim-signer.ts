// DKIM signatures for the mail Postern originates — composed templates and rendered API mail, and
// bounces (compose-message.ts) — with the active key of the message's From domain (mailauth's
// dkimSign, relaxed/relaxed, its default header list). Mail relayed for others is never signed here.
// Signing streams: dkimSign reads the message as a stream of slices of its buffer (views, not
// copies), hashing the body as it goes and keeping only the header block, and the result is the
// DKIM-Signature header alone; the relay sends it in front of the unchanged message bytes
// (OutboundMessage headerPrefix), so a 25 MiB message costs no second 25 MiB copy
// (bench/core/dkim-sign-memory.ts). The slices end at a line break: the relaxed body hash copies a
// line cut between two chunks into a new buffer, which for fixed-size slices is every chunk.
// The key comes through the engine's key cache (signing-key-cache.ts: read once per domain until a
// claim shows the keys changed); while PostgreSQL is away, the last answer for the domain is
// used. A key that exists but cannot be used (MAIL_SECRETS_KEY missing or wrong, a signing error) is
// SigningUnavailable: the delivery waits and is retried with the reason recorded, never sent
// unsigned behind the operator's back.

import { Readable } from 'node:stream';
import { setImmediate } from 'node:timers/promises';
import { DKIM_KEY_TAGS, isRetryableDbError, normalizeDomain, SealedKeyError, SecretsKeyMissingError, type SigningKey, unfoldedHeaderSection } from '@postern/shared';
import { dkimSign } from 'mailauth';
import addressparser from 'nodemailer/lib/addressparser';

/** The domain has a key, but this message cannot be signed with it now. */
export class SigningUnavailable extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SigningUnavailable';
  }
}

export interface MessageSigner {
  /** The DKIM-Signature header line(s) to send in front of `raw`, or null when its From domain has
   *  no active key (or it has no From address to sign for). */
  signatureFor(raw: Buffer): Promise<Buffer | null>;
}

/** The domain of the first address in the From: header field (A-label, lower case), or null. */
export function fromDomainOf(raw: Buffer): string | null {
  const field = /^from:[ \t]*(.*)$/im.exec(unfoldedHeaderSection(raw, 'utf8'))?.[1];
  if (!field) return null;
  const address = addressparser(field, { flatten: true }).find((entry) => entry.address.includes('@'))?.address;
  if (!address) return null;
  try {
    return normalizeDomain(address.slice(address.lastIndexOf('@') + 1));
  } catch {
    return null;
  }
}

/** About this much of the message per slice handed to the signer. */
const SLICE_BYTES = 64 * 1024;

/** `raw` as views of at most about SLICE_BYTES, each ending just after a LF where there is one. */
export function* lineSlices(raw: Buffer): Generator<Buffer> {
  let start = 0;
  while (start < raw.length) {
    let end = Math.min(raw.length, start + SLICE_BYTES);
    if (end < raw.length) {
      const lf = raw.lastIndexOf(0x0a, end - 1);
      if (lf >= start) end = lf + 1;
    }
    yield raw.subarray(start, end);
    start = end;
  }
}

/**
 * `raw` as a stream of lineSlices that gives the event loop a turn after each slice. Read from a
 * synchronous source, a Readable and mailauth's hashing run on microtasks alone: no timer or socket
 * of the engine was served until the whole message was hashed (a 10 MiB forwarded message held the
 * loop about 0.2 s; one carrying hundreds of DKIM-Signature fields, tens of seconds).
 */
export function messageStream(raw: Buffer): Readable {
  return Readable.from(
    (async function* () {
      for (const slice of lineSlices(raw)) {
        yield slice;
        await setImmediate();
      }
    })(),
    { objectMode: false },
  );
}

export type KeyReader = (domain: string) => Promise<SigningKey | null>;

/** The domain's active key as `keyFor` gives it; a key that cannot be opened is SigningUnavailable. */
export function createKeyReader(keyFor: KeyReader): KeyReader {
  // The last answer for each domain, used only while PostgreSQL cannot answer: the mail
  // needs nothing else from it to be sent, and an outage must not hold it back (dead-runner). No
  // key can change meanwhile: the API writes keys to the same database.
  const lastKnown = new Map<string, SigningKey | null>();
  return async (domain: string): Promise<SigningKey | null> => {
    try {
      const key = await keyFor(domain);
      lastKnown.set(domain, key);
      return key;
    } catch (error) {
      if (error instanceof SecretsKeyMissingError || error instanceof SealedKeyError) throw new SigningUnavailable(error.message, { cause: error });
      if (isRetryableDbError(error) && lastKnown.has(domain)) return lastKnown.get(domain) ?? null;
      throw error;
    }
  };
}

export function createMessageSigner(keyFor: KeyReader): MessageSigner {
  const currentKey = createKeyReader(keyFor);
  return {
    async signatureFor(raw) {
      const domain = fromDomainOf(raw);
      if (!domain) return null;
      const key = await currentKey(domain);
      if (!key) return null;
      const signature = { signingDomain: key.domain, selector: key.selector, privateKey: key.privateKeyPem, algorithm: DKIM_KEY_TAGS[key.keyType].a };
      // The signer signs what signatureData lists; its typings ask for the same fields at the top.
      const result = await dkimSign(messageStream(raw), { ...signature, canonicalization: 'relaxed/relaxed', signatureData: [signature] });
      const failure = result.errors[0];
      if (failure || !result.signatures) {
        const why = failure ? failure.err.message : 'no signature was made';
        throw new SigningUnavailable(`DKIM signing with ${key.selector}._domainkey.${key.domain} failed: ${why}`);
      }
      return Buffer.from(result.signatures, 'utf8');
    },
  };
}
