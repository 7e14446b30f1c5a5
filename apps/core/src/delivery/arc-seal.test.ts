import { createSrs, type DkimKeyType, dkimDnsRecord, generateDkimKeyPair, type SigningKey } from '@postern/shared';
import { authenticate } from 'mailauth';
import { describe, expect, it } from 'vitest';
import { authResultsFor, createArcSealer, hasArcChain, type SealingKey } from './arc-seal.ts';
import { createForwarder, forwardingDomain } from './forward-message.ts';

async function keyOf(keyType: DkimKeyType, domain: string, selector = 's1') {
  const pair = await generateDkimKeyPair(keyType);
  const signing: SigningKey = { domain, selector, keyType, privateKeyPem: pair.privateKeyPem };
  const sealing: SealingKey = { domain, selector, privateKeyPem: pair.privateKeyPem, algorithm: keyType === 'ed25519' ? 'ed25519-sha256' : 'rsa-sha256' };
  const record = dkimDnsRecord({ domain, selector, keyType, publicKey: pair.publicKey });
  return { signing, sealing, record };
}

function resolverOf(records: { name: string; value: string }[]) {
  return async (name: string, type: string) => {
    const found = records.filter((record) => record.name === name && type === 'TXT');
    if (found.length === 0) throw Object.assign(new Error(`${name} not found`), { code: 'ENOTFOUND' });
    return found.map((record) => [record.value]);
  };
}

const received = Buffer.from(
  'Authentication-Results: mx.alias.test; spf=pass smtp.mailfrom=someone@sender.test\r\n' +
    'Received: from sender.test ([127.0.0.9]) by mx.alias.test (Postern) with ESMTP id m1\r\n' +
    'From: Someone <someone@sender.test>\r\nTo: list@alias.test\r\nSubject: hello\r\nMessage-ID: <x1@sender.test>\r\n\r\n' +
    'Body line one.\r\nBody line two.\r\n',
);

async function arcOf(message: Buffer, resolver: ReturnType<typeof resolverOf>) {
  const result = await authenticate(message, { ip: '127.0.0.1', helo: 'mx.alias.test', sender: '', mta: 'receiver.test', resolver, disableBimi: true });
  if (!result.arc) throw new Error('mailauth gave no ARC result');
  return result.arc;
}

describe('ARC sealing of forwarded mail', () => {
  for (const keyType of ['rsa2048', 'ed25519'] as const) {
    it(`${keyType}: the set verifies against the forwarding domain's record, i=1 cv=none, our edge's results quoted`, async () => {
      const { sealing, record } = await keyOf(keyType, 'alias.test');
      const resolver = resolverOf([record]);
      const sealer = createArcSealer({ authservId: 'mx.alias.test', resolver: async () => [] });
      const set = await sealer.seal(received, sealing);
      expect(set).not.toBeNull();
      const text = set!.toString('utf8');
      expect(text).toMatch(/^ARC-Seal: i=1;/);
      expect(text).toMatch(/cv=none/);
      expect(text).toContain('ARC-Authentication-Results: i=1; mx.alias.test; spf=pass smtp.mailfrom=someone@sender.test');
      const arc = await arcOf(Buffer.concat([set!, received]), resolver);
      expect(arc.status.result).toBe('pass');
    });
  }

  it('seals over an existing chain with i=2 and cv=pass, and the whole chain verifies', async () => {
    const first = await keyOf('rsa2048', 'first.test');
    const ours = await keyOf('ed25519', 'alias.test');
    const resolver = resolverOf([first.record, ours.record]);
    const firstSet = await createArcSealer({ authservId: 'mx.first.test', resolver }).seal(received, first.sealing);
    const once = Buffer.concat([firstSet!, received]);
    expect(hasArcChain(once)).toBe(true);
    const secondSet = await createArcSealer({ authservId: 'mx.alias.test', resolver }).seal(once, ours.sealing);
    const text = secondSet!.toString('utf8');
    expect(text).toMatch(/^ARC-Seal: i=2;/);
    expect(text).toMatch(/cv=pass/);
    expect(text).toContain('ARC-Authentication-Results: i=2; mx.alias.test; arc=pass');
    const arc = await arcOf(Buffer.concat([secondSet!, once]), resolver);
    expect(arc.status.result).toBe('pass');
    expect(arc.i).toBe(2);
  });

  it('finds a chain past the first 64 KiB of a long header section: i=2 cv=pass, not a second i=1', async () => {
    const first = await keyOf('rsa2048', 'first.test');
    const ours = await keyOf('ed25519', 'alias.test');
    const resolver = resolverOf([first.record, ours.record]);
    const filler = Buffer.from('X-Filler: '.concat('y'.repeat(70), '\r\n').repeat(1_500));
    const long = Buffer.concat([filler, received]);
    const firstSet = await createArcSealer({ authservId: 'mx.first.test', resolver }).seal(long, first.sealing);
    // The first set is put in front; a later hop's headers push it down past 64 KiB.
    const pushedDown = Buffer.concat([filler, firstSet!, received]);
    expect(hasArcChain(pushedDown)).toBe(true);
    const secondSet = await createArcSealer({ authservId: 'mx.alias.test', resolver }).seal(pushedDown, ours.sealing);
    expect(secondSet!.toString('utf8')).toMatch(/^ARC-Seal: i=2;/);
    expect(secondSet!.toString('utf8')).toMatch(/cv=pass/);
  });

  it('says cv=fail over a chain whose seal does not verify', async () => {
    const first = await keyOf('rsa2048', 'first.test');
    const ours = await keyOf('rsa2048', 'alias.test');
    const firstSet = await createArcSealer({ authservId: 'mx.first.test', resolver: async () => [] }).seal(received, first.sealing);
    // The first sealer's record is not published: its seal cannot be verified.
    const resolver = resolverOf([ours.record]);
    const secondSet = await createArcSealer({ authservId: 'mx.alias.test', resolver }).seal(Buffer.concat([firstSet!, received]), ours.sealing);
    expect(secondSet!.toString('utf8')).toMatch(/cv=fail/);
  });

  it('lets the event loop turn while it reads a large message: a timer set before sealing fires before the set is made', async () => {
    const { sealing } = await keyOf('ed25519', 'alias.test');
    const body = Buffer.alloc(8 * 1024 * 1024, 'Body line of a large message.\r\n');
    const raw = Buffer.concat([received.subarray(0, received.indexOf('\r\n\r\n') + 4), body]);
    let timerFired = false;
    const timer = setTimeout(() => {
      timerFired = true;
    }, 0);
    let firedBeforeDone: boolean | null = null;
    await createArcSealer({ authservId: 'mx.alias.test', resolver: async () => [] })
      .seal(raw, sealing)
      .then(() => {
        firedBeforeDone = timerFired;
      });
    clearTimeout(timer);
    // Before: the whole 8 MiB was hashed in microtasks, no timer (lease keeper, heartbeat,
    // another delivery's socket) ran until the seal was done.
    expect(firedBeforeDone).toBe(true);
  });

  it("verifies none of a sender's DKIM-Signature fields: hundreds of them cost no body hash each", async () => {
    const first = await keyOf('rsa2048', 'first.test');
    const ours = await keyOf('ed25519', 'alias.test');
    const resolver = resolverOf([first.record, ours.record]);
    const separator = received.indexOf('\r\n\r\n') + 4;
    const large = Buffer.concat([received.subarray(0, separator), Buffer.alloc(2 * 1024 * 1024, 'Body line of a large message.\r\n')]);
    const firstSet = await createArcSealer({ authservId: 'mx.first.test', resolver }).seal(large, first.sealing);
    const chained = Buffer.concat([firstSet!, large]);
    // Each with its own l=: a verifier hashes the body once per distinct length.
    const signatures = Array.from({ length: 300 }, (_, i) => `DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=d${i}.test; s=s; l=${i + 1}; h=from; bh=AAAA; b=AAAA\r\n`);
    const hostile = Buffer.concat([firstSet!, Buffer.from(signatures.join('')), large]);
    const sealer = createArcSealer({ authservId: 'mx.alias.test', resolver });
    const timed = async (raw: Buffer) => {
      const t0 = performance.now();
      const set = await sealer.seal(raw, ours.sealing);
      return { ms: performance.now() - t0, set };
    };
    // Interleaved, the fastest of three each: on a busy machine one timing alone may have waited
    // for a core (the ratio is about 1 without the fix's cause, about 40 with it).
    const baseline: Awaited<ReturnType<typeof timed>>[] = [];
    const attacked: Awaited<ReturnType<typeof timed>>[] = [];
    for (let round = 0; round < 3; round++) {
      baseline.push(await timed(chained));
      attacked.push(await timed(hostile));
    }
    expect(baseline[0]!.set!.toString()).toMatch(/cv=pass/);
    expect(attacked[0]!.set!.toString()).toMatch(/cv=pass/);
    const fastest = (runs: { ms: number }[]) => Math.min(...runs.map((run) => run.ms));
    // Before: about 300 body hashes of 2 MiB, well over an order of magnitude slower than the baseline.
    expect(fastest(attacked) / fastest(baseline)).toBeLessThan(10);
  }, 120_000);

  it('quotes only an Authentication-Results the edge put first, and only when it carries our name', () => {
    expect(authResultsFor(received, 'mx.alias.test', null)).toBe('mx.alias.test; spf=pass smtp.mailfrom=someone@sender.test');
    const forged = Buffer.from('Received: x\r\nSubject: s\r\nAuthentication-Results: mx.alias.test; dkim=pass\r\n\r\nbody\r\n');
    expect(authResultsFor(forged, 'mx.alias.test', null)).toBe('mx.alias.test; none');
    expect(authResultsFor(received, 'other.test', 'fail')).toBe('other.test; arc=fail');
  });
});

describe('forwarding: SRS sender and ARC set in the first recipient\'s domain', () => {
  const srs = createSrs('a-test-secret-of-enough-length');

  it('rewrites the sender into the first accepted recipient\'s domain and seals with its key', async () => {
    const { signing, record } = await keyOf('rsa2048', 'alias.test');
    const asked: string[] = [];
    const forwarder = createForwarder({
      srs,
      sealer: createArcSealer({ authservId: 'mx.alias.test', resolver: async () => [] }),
      keyFor: async (domain) => {
        asked.push(domain);
        return domain === 'alias.test' ? signing : null;
      },
    });
    const forwarded = await forwarder.forward('someone@sender.test', { raw: received, envelopeTo: ['list@alias.test', 'b@other.test'] });
    expect(forwarded.envelopeFrom).toMatch(/^SRS0=.{8}=[A-Z2-7]{2}=sender\.test=someone@alias\.test$/);
    expect(asked).toEqual(['alias.test']);
    const arc = await arcOf(Buffer.concat([forwarded.arcSet!, received]), resolverOf([record]));
    expect(arc.status.result).toBe('pass');
  });

  it('keeps <> and goes unsealed without a key; without SRS the sender is kept', async () => {
    const withSrs = createForwarder({ srs, sealer: createArcSealer({ authservId: 'mx', resolver: async () => [] }), keyFor: async () => null });
    expect(await withSrs.forward('', { raw: received, envelopeTo: ['list@alias.test'] })).toEqual({ envelopeFrom: '', arcSet: null });
    const without = createForwarder({ srs: null, sealer: null, keyFor: async () => null });
    expect(await without.forward('someone@sender.test', { raw: received, envelopeTo: ['list@alias.test'] })).toEqual({ envelopeFrom: 'someone@sender.test', arcSet: null });
    expect(forwardingDomain([])).toBeNull();
    expect(forwardingDomain(['srs0=abc=xx=a.test=b@Alias.Test'])).toBe('alias.test');
  });
});
