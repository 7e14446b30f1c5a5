import { randomBytes } from 'node:crypto';
import {
  type DkimKeyType,
  dkimDnsRecord,
  generateDkimKeyPair,
  openPrivateKey,
  SecretsKeyMissingError,
  type SigningKey,
  sealPrivateKey,
  secretsKeyOf,
} from '@postern/shared';
import { dkimVerify } from 'mailauth';
import MailComposer from 'nodemailer/lib/mail-composer';
import { describe, expect, it } from 'vitest';
import { createMessageSigner, fromDomainOf, lineSlices, SigningUnavailable } from './dkim-signer.ts';

async function keyOf(keyType: DkimKeyType, domain = 'example.test', selector = 's1') {
  const pair = await generateDkimKeyPair(keyType);
  const signing: SigningKey = { domain, selector, keyType, privateKeyPem: pair.privateKeyPem };
  const record = dkimDnsRecord({ domain, selector, keyType, publicKey: pair.publicKey });
  return { signing, record };
}

/** mailauth's resolver hook: the published records by name, as DNS would answer TXT. */
function resolverOf(records: { name: string; value: string }[]) {
  return async (name: string, type: string) => {
    const found = records.filter((record) => record.name === name && type === 'TXT');
    if (found.length === 0) throw Object.assign(new Error(`${name} not found`), { code: 'ENOTFOUND' });
    return found.map((record) => [record.value]);
  };
}

async function composed(from: string, text = 'Your code is 493817.'): Promise<Buffer> {
  return new MailComposer({ from, to: 'ann@customer.test', subject: 'Login code', text, messageId: '<d1@example.test>' }).compile().build();
}

describe('DKIM signing of the mail Postern originates', () => {
  for (const keyType of ['rsa2048', 'ed25519'] as const) {
    it(`${keyType}: the signature verifies against the published record (mailauth verify)`, async () => {
      const { signing, record } = await keyOf(keyType);
      const asked: string[] = [];
      const signer = createMessageSigner(async (domain) => {
        asked.push(domain);
        return signing;
      });
      const raw = await composed('Postern <postern@Example.test>');
      const signature = await signer.signatureFor(raw);
      expect(asked).toEqual(['example.test']);
      const header = signature?.toString().replace(/\r\n[ \t]+/g, ' ') ?? '';
      expect(header).toMatch(/^DKIM-Signature: /);
      expect(header).toMatch(/\bd=example\.test;/);
      expect(header).toMatch(/\bs=s1;/);
      const result = await dkimVerify(Buffer.concat([signature as Buffer, raw]), { resolver: resolverOf([record]) });
      expect(result.results.map((entry) => entry.status.result)).toEqual(['pass']);
      // Another key under the same name does not verify it.
      const other = await keyOf(keyType);
      const forged = await dkimVerify(Buffer.concat([signature as Buffer, raw]), { resolver: resolverOf([other.record]) });
      expect(forged.results.map((entry) => entry.status.result)).toEqual(['fail']);
    });
  }

  it('a domain without an active key is not signed; nor a message without a From address', async () => {
    const signer = createMessageSigner(async () => null);
    expect(await signer.signatureFor(await composed('postern@example.test'))).toBeNull();
    const never = createMessageSigner(async () => {
      throw new Error('no lookup expected');
    });
    expect(await never.signatureFor(Buffer.from('Subject: x\r\n\r\nbody\r\n'))).toBeNull();
  });

  it('the From domain is read from the header, in its A-label form', async () => {
    expect(fromDomainOf(await composed('"Mail, Delivery" <MAILER-DAEMON@Bücher.example>'))).toBe('xn--bcher-kva.example');
    expect(fromDomainOf(Buffer.from('To: a@b.test\r\nFrom: Mail Delivery System\r\n <MAILER-DAEMON@postern.test>\r\n\r\nFrom: x@y.test\r\n'))).toBe('postern.test');
    expect(fromDomainOf(Buffer.from('Subject: none\r\n\r\nFrom: x@y.test\r\n'))).toBeNull();
    // Past the first 64 KiB of a long header section (the edge takes up to 256 KiB by default).
    const filler = 'X-Filler: '.concat('y'.repeat(70), '\r\n').repeat(1_500);
    expect(fromDomainOf(Buffer.from(`${filler}From: late@late.test\r\n\r\nbody\r\n`))).toBe('late.test');
  });

  it('while PostgreSQL is away the last answer for the domain is used; with none, the failure is not hidden', async () => {
    const { signing, record } = await keyOf('ed25519');
    const away = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
    let up = true;
    const signer = createMessageSigner(async () => {
      if (!up) throw away;
      return signing;
    });
    const raw = await composed('postern@example.test');
    await signer.signatureFor(raw);
    up = false;
    const during = (await signer.signatureFor(raw)) as Buffer;
    expect((await dkimVerify(Buffer.concat([during, raw]), { resolver: resolverOf([record]) })).results[0]?.status.result).toBe('pass');
    await expect(signer.signatureFor(await composed('postern@other.test'))).rejects.toBe(away);
  });

  it('a key that cannot be opened is SigningUnavailable, naming why, never an unsigned message', async () => {
    const missing = createMessageSigner(async () => {
      throw new SecretsKeyMissingError('signing mail from example.test');
    });
    await expect(missing.signatureFor(await composed('postern@example.test'))).rejects.toThrow(SigningUnavailable);
    const { signing } = await keyOf('ed25519');
    const name = { domain: 'example.test', selector: 's1' };
    const sealed = sealPrivateKey(secretsKeyOf(randomBytes(32)), name, signing.privateKeyPem);
    const wrongKey = createMessageSigner(async () => ({ ...signing, privateKeyPem: openPrivateKey(secretsKeyOf(randomBytes(32)), name, sealed) }));
    await expect(wrongKey.signatureFor(await composed('postern@example.test'))).rejects.toThrow(/cannot be opened with MAIL_SECRETS_KEY/);
  });

  it('a 25 MiB message is signed from views of its buffer, never a copy of it (RSS: bench/core/dkim-sign-memory.ts)', async () => {
    const { signing, record } = await keyOf('rsa2048');
    const line = `${'x'.repeat(76)}\r\n`;
    const raw = await composed('postern@example.test', line.repeat(Math.ceil((25 * 1024 * 1024) / line.length)));
    expect(raw.length).toBeGreaterThan(25 * 1024 * 1024);
    const slices = [...lineSlices(raw)];
    let offset = 0;
    for (const slice of slices) {
      // A view into the message's own memory, at most 64 KiB, cut after a line break.
      expect(slice.buffer).toBe(raw.buffer);
      expect(slice.byteOffset).toBe(raw.byteOffset + offset);
      expect(slice.length).toBeLessThanOrEqual(64 * 1024);
      if (offset + slice.length < raw.length) expect(slice.at(-1)).toBe(0x0a);
      offset += slice.length;
    }
    expect(offset).toBe(raw.length);
    const signature = (await createMessageSigner(async () => signing).signatureFor(raw)) as Buffer;
    // The signature is a header line, not the message: the relay sends it in front of `raw`.
    expect(signature.length).toBeLessThan(2_048);
    const result = await dkimVerify(Buffer.concat([signature, raw]), { resolver: resolverOf([record]) });
    expect(result.results[0]?.status.result).toBe('pass');
    // Hashing and verifying 25 MiB twice takes seconds on a busy 2-vCPU machine: vitest's default
    // 5 s would fail the test for the machine's load, not for anything it checks.
  }, 60_000);
});
