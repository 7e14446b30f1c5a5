// New DKIM key pairs (node:crypto): RSA 2048 (RFC 8301: at least 1024 bits to be accepted, 2048 is
// what the large mailbox providers ask for) or Ed25519 (RFC 8463). The public half is kept as the
// p= value of the DNS record: base64 of the SubjectPublicKeyInfo for RSA, of the bare 32-byte key
// for Ed25519 (RFC 8463 section 4.2); the private half as PKCS#8 PEM, sealed before it is stored.
// Generated off the event loop: an RSA key takes long enough to stall the API's other requests.
import { generateKeyPair } from 'node:crypto';
import { promisify } from 'node:util';

const generate = promisify(generateKeyPair);

export const DKIM_KEY_TYPES = ['rsa2048', 'ed25519'] as const;
export type DkimKeyType = (typeof DKIM_KEY_TYPES)[number];

/** The k= tag of the record and the a= tag of signatures made with the key. */
export const DKIM_KEY_TAGS: Record<DkimKeyType, { k: 'rsa' | 'ed25519'; a: 'rsa-sha256' | 'ed25519-sha256' }> = {
  rsa2048: { k: 'rsa', a: 'rsa-sha256' },
  ed25519: { k: 'ed25519', a: 'ed25519-sha256' },
};

export interface DkimKeyPair {
  privateKeyPem: string;
  /** The record's p= value. */
  publicKey: string;
}

/** DER SubjectPublicKeyInfo of an Ed25519 key: a fixed 12-byte prefix, then the 32-byte key. */
const ED25519_SPKI_PREFIX_BYTES = 12;

export async function generateDkimKeyPair(type: DkimKeyType): Promise<DkimKeyPair> {
  if (type === 'rsa2048') {
    const { privateKey, publicKey } = await generate('rsa', { modulusLength: 2048 });
    return {
      privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      publicKey: publicKey.export({ type: 'spki', format: 'der' }).toString('base64'),
    };
  }
  const { privateKey, publicKey } = await generate('ed25519');
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKey: publicKey.export({ type: 'spki', format: 'der' }).subarray(ED25519_SPKI_PREFIX_BYTES).toString('base64'),
  };
}
