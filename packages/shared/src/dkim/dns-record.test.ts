import { createPublicKey } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { dkimDnsRecord } from './dns-record.ts';
import { generateDkimKeyPair } from './key-pair.ts';
import { DkimKeyInputError, dkimSelector } from './manage-dkim-keys.ts';

describe('the DNS record of a DKIM key', () => {
  it('RSA 2048: p= is the SubjectPublicKeyInfo, and the zone line splits it into strings of at most 255', async () => {
    const pair = await generateDkimKeyPair('rsa2048');
    const key = createPublicKey({ key: Buffer.from(pair.publicKey, 'base64'), format: 'der', type: 'spki' });
    expect(key.asymmetricKeyDetails?.modulusLength).toBe(2048);
    const record = dkimDnsRecord({ domain: 'example.test', selector: 'mail2025', keyType: 'rsa2048', publicKey: pair.publicKey });
    expect(record.name).toBe('mail2025._domainkey.example.test');
    expect(record.value).toBe(`v=DKIM1; k=rsa; p=${pair.publicKey}`);
    const strings = [...record.zoneFileLine.matchAll(/"([^"]*)"/g)].map((match) => match[1] as string);
    expect(strings.length).toBeGreaterThan(1);
    for (const text of strings) expect(text.length).toBeLessThanOrEqual(255);
    expect(strings.join('')).toBe(record.value);
    expect(record.zoneFileLine.startsWith('mail2025._domainkey.example.test. IN TXT "v=DKIM1; k=rsa; p=')).toBe(true);
  });

  it('Ed25519: p= is the bare 32-byte key (RFC 8463), one string', async () => {
    const pair = await generateDkimKeyPair('ed25519');
    expect(Buffer.from(pair.publicKey, 'base64')).toHaveLength(32);
    const record = dkimDnsRecord({ domain: 'example.test', selector: 'ed', keyType: 'ed25519', publicKey: pair.publicKey });
    expect(record.zoneFileLine).toBe(`ed._domainkey.example.test. IN TXT "v=DKIM1; k=ed25519; p=${pair.publicKey}"`);
  });

  it('selectors are DNS labels, lower-cased, never repaired', () => {
    expect(dkimSelector('Mail-2025.eu')).toBe('mail-2025.eu');
    for (const bad of ['', '-a', 'a_b', 'a b', 'a;b', 'x'.repeat(64), 'a..b', 'sel\n']) expect(() => dkimSelector(bad)).toThrow(DkimKeyInputError);
  });
});
