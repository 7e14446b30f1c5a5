// The ARC set (RFC 8617) of mail an alias forwards, made with the forwarding domain's active DKIM
// key: ARC-Authentication-Results (what was known about the message when it arrived),
// ARC-Message-Signature (the message as it leaves) and ARC-Seal (the chain so far). A receiver that
// trusts us then sees the sender's authentication results although forwarding broke SPF (and SRS
// made the envelope ours).
// Like DKIM signing (dkim-signer.ts) it streams: mailauth reads the message as line-cut views of its
// buffer, with a turn of the event loop between them, and keeps only the header block, and the set is sent in front of the unchanged bytes
// (OutboundMessage headerPrefix). A message without a chain needs no DNS. One that carries a chain
// is verified first (mailauth's dkimVerify + arc, through the engine's mail resolver): the new seal
// says cv=pass or cv=fail, and i= follows the highest instance; a chain whose newest seal already says
// cv=fail, or that has 50 sets, is not sealed again (mailauth refuses, the mail goes unsealed).
import { unfoldedHeaderSection } from '@postern/shared';
import { arc, createSeal, dkimVerify } from 'mailauth';
import { messageStream, SigningUnavailable } from './dkim-signer.ts';

/** A DKIM key as the sealer needs it (the domain's active key, already opened). */
export interface SealingKey {
  domain: string;
  selector: string;
  privateKeyPem: string;
  /** rsa-sha256 or ed25519-sha256. */
  algorithm: string;
}

/** TXT lookups for the keys of an existing chain's sealers, in mailauth's resolver shape. */
export type TxtResolver = (name: string, type: string) => Promise<string[][] | string[]>;

export function hasArcChain(raw: Buffer): boolean {
  return /^arc-seal[ \t]*:/im.test(unfoldedHeaderSection(raw, 'latin1'));
}

/**
 * The results the ARC-Authentication-Results of our set carries (after the authserv-id): arc= of an
 * existing chain, and what our edge wrote in an Authentication-Results header with our authserv-id,
 * or "none". Only the very first header field of the stored message can be the edge's (it prepends
 * what it adds): a sender's own header claiming our name is further down and never read.
 * This is the one place to change when the edge's stored evaluation is to be used instead.
 */
export function authResultsFor(raw: Buffer, authservId: string, chainResult: 'pass' | 'fail' | null): string {
  const results: string[] = [];
  if (chainResult) results.push(`arc=${chainResult}`);
  const first = unfoldedHeaderSection(raw, 'latin1').split(/\r?\n/)[0] ?? '';
  const match = /^authentication-results[ \t]*:[ \t]*([^;\s]+)[ \t]*;?(.*)$/i.exec(first);
  if (match && match[1]!.toLowerCase() === authservId.toLowerCase()) {
    const edge = match[2]!.trim().replace(/;\s*$/, '');
    if (edge !== '' && edge.toLowerCase() !== 'none') results.push(edge);
  }
  return `${authservId}; ${results.length > 0 ? results.join('; ') : 'none'}`;
}

export interface ArcSealer {
  /** The ARC set's header lines to send in front of `raw`, or null when no set can be added. */
  seal(raw: Buffer, key: SealingKey): Promise<Buffer | null>;
}

export function createArcSealer(options: { authservId: string; resolver: TxtResolver; now?: () => Date }): ArcSealer {
  const now = options.now ?? (() => new Date());
  return {
    async seal(raw, key) {
      const sealKey = { signingDomain: key.domain, selector: key.selector, privateKey: key.privateKeyPem, algorithm: key.algorithm };
      const stream = () => messageStream(raw);
      let result: Awaited<ReturnType<typeof createSeal>>;
      if (!hasArcChain(raw)) {
        result = await createSeal(stream(), {
          seal: { ...sealKey, cv: 'none', authResults: authResultsFor(raw, options.authservId, null), signTime: now() },
        });
      } else {
        // The existing chain is verified in the same pass that hashes the body for our signature.
        // Only its newest ARC-Message-Signature matters to cv=; the sender's DKIM-Signature fields
        // are not verified (maxSignatures 0, patches/mailauth+7.1.0.patch): each one with its own
        // l= or c= cost a hash of the whole body and a key lookup, without limit.
        const seal = { ...sealKey };
        const verified = await dkimVerify(stream(), { resolver: options.resolver, seal, maxSignatures: 0 });
        const chain = await arc((verified as unknown as { arc: Parameters<typeof arc>[0] }).arc, { resolver: options.resolver });
        const cv = chain.status.result === 'pass' ? 'pass' : 'fail';
        const prepared = (verified as unknown as { seal?: { bodyHash?: string } }).seal ?? {};
        result = await createSeal(false, {
          headers: (verified as unknown as { headers: unknown }).headers,
          arc: (verified as unknown as { arc: Parameters<typeof arc>[0] }).arc,
          seal: { ...sealKey, ...prepared, cv, authResults: authResultsFor(raw, options.authservId, cv), signTime: now() },
        });
      }
      if (result.headers.length === 0) {
        const why = result.errors[0]?.err;
        // A chain that cannot take another set is the sender's doing: the mail goes unsealed.
        if (why && ['EARCCHAINFAILED', 'EINVALIDINSTANCE'].includes(why.code ?? '')) return null;
        // Anything else is the key's or ours: the delivery waits like one whose DKIM signing failed.
        throw new SigningUnavailable(`ARC sealing with ${key.selector}._domainkey.${key.domain} failed: ${why?.message ?? 'no set was made'}`);
      }
      return Buffer.from(`${result.headers.join('\r\n')}\r\n`, 'utf8');
    },
  };
}
