// What changes when mail the edge accepted is relayed on to an alias's target (docs/core.md,
// "Forwarded mail: SRS and ARC"): the envelope sender becomes an SRS address in the forwarding
// domain (MAIL_SRS_SECRET), so the receiver's SPF check is of our domain and a bounce comes back to
// our edge, which routes it to the original sender; and an ARC set sealed with the forwarding
// domain's active DKIM key goes in front of the bytes, which stay as received.
// The forwarding domain is that of the first recipient the edge accepted for the message: every
// accepted recipient is in a domain the edge serves, so its bounces come back to us whichever it is.
import { DKIM_KEY_TAGS, type SrsCodec } from '@postern/shared';
import type { ArcSealer } from './arc-seal.ts';
import type { KeyReader } from './dkim-signer.ts';

export interface ForwardedEnvelope {
  envelopeFrom: string;
  /** The ARC set to send in front of the message, or null. */
  arcSet: Buffer | null;
}

export interface Forwarder {
  forward(envelopeFrom: string, payload: { raw: Buffer; envelopeTo?: readonly string[] }): Promise<ForwardedEnvelope>;
}

/** The domain (A-label, lower case) of the first accepted recipient, or null. */
export function forwardingDomain(envelopeTo: readonly string[] | undefined): string | null {
  const first = envelopeTo?.[0];
  if (!first) return null;
  const at = first.lastIndexOf('@');
  return at > 0 && at < first.length - 1 ? first.slice(at + 1).toLowerCase() : null;
}

export function createForwarder(options: { srs: SrsCodec | null; sealer: ArcSealer | null; keyFor: KeyReader }): Forwarder {
  return {
    async forward(envelopeFrom, payload) {
      const domain = forwardingDomain(payload.envelopeTo);
      if (!domain) return { envelopeFrom, arcSet: null };
      const rewritten = options.srs ? options.srs.rewrite(envelopeFrom, domain) : envelopeFrom;
      if (!options.sealer) return { envelopeFrom: rewritten, arcSet: null };
      const key = await options.keyFor(domain);
      if (!key) return { envelopeFrom: rewritten, arcSet: null };
      const arcSet = await options.sealer.seal(payload.raw, {
        domain: key.domain,
        selector: key.selector,
        privateKeyPem: key.privateKeyPem,
        algorithm: DKIM_KEY_TAGS[key.keyType].a,
      });
      return { envelopeFrom: rewritten, arcSet };
    },
  };
}
