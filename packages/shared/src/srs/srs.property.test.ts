// Property tests for SRS: every sender we fold comes back out of the bounce address as it went in,
// for the whole accepted age and whatever case a relay gives the address on the way back; and no
// address we did not make — another secret, one changed character, an older timestamp — is turned
// into a recipient (that would make the edge an open relay); after a change of secret, the previous one
// is accepted beside it and never used; any sender (UTF-8, quoted, long) is kept or folds back exactly,
// and no one-character edit turns an address we made into another. A fixed seed keeps a failure reproducible.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_ADDRESS_OCTETS } from '../addresses/normalize-address.ts';
import { createSrs, encodeTimestamp, HASH_LENGTH, isSrsLocalPart, looksLikeSrs, MAX_AGE_DAYS } from './srs.ts';

const SEED = 20_261_127;
const DAY_MS = 86_400_000;
const SECRET = 'a-test-secret-of-enough-length';
const srs = createSrs(SECRET);

const atext = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&\'*+-/=?^_`{|}~'.split(''));
const atom = fc.array(atext, { minLength: 1, maxLength: 12 }).map((chars) => chars.join(''));
const localPart = fc.array(atom, { minLength: 1, maxLength: 3 }).map((atoms) => atoms.join('.'));
const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?$/);
const domain = fc.array(label, { minLength: 1, maxLength: 3 }).map((labels) => `${labels.join('.')}.test`);
const when = fc.date({ min: new Date('2000-01-01T00:00:00Z'), max: new Date('2100-01-01T00:00:00Z'), noInvalidDate: true });
const FORWARDER = 'alias.example';

function localOf(address: string): string {
  return address.slice(0, address.lastIndexOf('@'));
}

describe('SRS', () => {
  it('folds a sender into the forwarding domain and decodes it back for the whole accepted age, in any case', () => {
    fc.assert(
      fc.property(localPart, domain, when, fc.integer({ min: 0, max: MAX_AGE_DAYS * DAY_MS }), fc.boolean(), (local, from, now, later, lower) => {
        const sender = `${local}@${from}`;
        const rewritten = srs.rewrite(sender, FORWARDER, now);
        expect(rewritten).toMatch(new RegExp(`^SRS0=.{${HASH_LENGTH}}=[A-Z2-7]{2}=.+@${FORWARDER}$`));
        const received = lower ? localOf(rewritten).toLowerCase() : localOf(rewritten);
        const decoded = srs.decode(received, new Date(now.getTime() + later));
        expect(decoded).toEqual({ status: 'valid', address: lower ? sender.toLowerCase() : sender });
      }),
      { seed: SEED, numRuns: 500 },
    );
  });

  it('refuses an address made with another secret', () => {
    const other = createSrs('another-secret-of-enough-length');
    fc.assert(
      fc.property(localPart, domain, when, (local, from, now) => {
        const decoded = srs.decode(localOf(other.rewrite(`${local}@${from}`, FORWARDER, now)), now);
        expect(decoded.status).toBe('forged');
      }),
      { seed: SEED, numRuns: 300 },
    );
  });

  it('after a change of secret: makes addresses with the new one, accepts both until the previous one is dropped', () => {
    const before = createSrs('the-secret-before-the-change');
    const changing = createSrs(SECRET, 'the-secret-before-the-change');
    const third = createSrs('a-third-secret-of-enough-length');
    fc.assert(
      fc.property(localPart, domain, when, fc.integer({ min: 0, max: MAX_AGE_DAYS * DAY_MS }), (local, from, now, later) => {
        const sender = `${local}@${from}`;
        const then = new Date(now.getTime() + later);
        // Made before the change: accepted while the previous secret is given, refused once it is gone.
        const old = localOf(before.rewrite(sender, FORWARDER, now));
        expect(changing.decode(old, then)).toEqual({ status: 'valid', address: sender });
        expect(srs.decode(old, then).status).toBe('forged');
        // Made now: with the new secret only.
        expect(changing.rewrite(sender, FORWARDER, now)).toBe(srs.rewrite(sender, FORWARDER, now));
        expect(before.decode(localOf(changing.rewrite(sender, FORWARDER, now)), then).status).toBe('forged');
        // A secret that is neither is still refused.
        expect(changing.decode(localOf(third.rewrite(sender, FORWARDER, now)), then).status).toBe('forged');
      }),
      { seed: SEED, numRuns: 300 },
    );
  });

  it('refuses an address with any one character of its hash, timestamp, domain or local part changed', () => {
    fc.assert(
      fc.property(localPart, domain, when, fc.nat(), fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789'.split('')), (local, from, now, pick, replacement) => {
        const rewritten = localOf(srs.rewrite(`${local}@${from}`, FORWARDER, now));
        // Every position after "SRS0=" that is not a separator.
        const positions = [...rewritten].map((char, index) => ({ char, index })).filter(({ char, index }) => index >= 5 && char !== '=');
        const { char, index } = positions[pick % positions.length]!;
        fc.pre(char.toLowerCase() !== replacement);
        const tampered = rewritten.slice(0, index) + replacement + rewritten.slice(index + 1);
        const decoded = srs.decode(tampered, now);
        // A changed timestamp character can also make a valid hash over an old timestamp impossible
        // to tell from an expired one; either way nothing is routed.
        expect(['forged', 'expired']).toContain(decoded.status);
      }),
      { seed: SEED, numRuns: 1000 },
    );
  });

  // The parts were once hashed run together, so moving the '=' between them kept the hash:
  // SRS0=h=TT=example.com=alice decoded, as SRS0=h=TT=example.co=malice, to malice@example.co, and
  // one bounce address seen let anyone relay to addresses in other domains.
  it('refuses an address whose separator between two parts is moved, in SRS0 and SRS1 alike', () => {
    const first = createSrs('the-first-forwarders-own-secret');
    // parts joined with '=', the boundary between parts[index] and parts[index + 1] moved `by`
    // characters (null: past either end). Moving an '=' itself over it writes the same address.
    const moved = (parts: readonly string[], index: number, by: number): string | null => {
      const [left, right] = [parts[index]!, parts[index + 1]!];
      if (by > 0 ? by >= right.length : -by >= left.length) return null;
      const joined = left + right;
      const cut = left.length + by;
      return [...parts.slice(0, index), joined.slice(0, cut), joined.slice(cut), ...parts.slice(index + 2)].join('=');
    };
    fc.assert(
      fc.property(localPart, domain, when, fc.integer({ min: -6, max: 6 }).filter((by) => by !== 0), (local, from, now, by) => {
        // SRS0=hash=TT=domain=local: the '=' between domain and local.
        const srs0 = localOf(srs.rewrite(`${local}@${from}`, FORWARDER, now)).split('=');
        const tampered0 = moved([srs0[0]!, srs0[1]!, srs0[2]!, srs0[3]!, srs0.slice(4).join('=')], 3, by);
        if (tampered0 !== null && tampered0 !== srs0.join('=')) expect(srs.decode(tampered0, now).status).toBe('forged');
        // SRS1=hash=first==hhh=TT=domain=local: the '=' between the first forwarder and the rest.
        const srs1 = localOf(srs.rewrite(first.rewrite(`${local}@${from}`, 'first.example', now), FORWARDER, now));
        const [, hash, firstDomain] = srs1.split('=');
        const rest = srs1.slice(`SRS1=${hash}=${firstDomain}=`.length);
        const tampered1 = moved(['SRS1', hash!, firstDomain!, rest], 2, by);
        if (tampered1 !== null && tampered1 !== srs1) expect(srs.decode(tampered1, now).status).toBe('forged');
      }),
      { seed: SEED, numRuns: 500 },
    );
  });

  it('refuses an address older than the accepted age, until its timestamp comes round again', () => {
    fc.assert(
      fc.property(localPart, domain, when, fc.integer({ min: MAX_AGE_DAYS + 1, max: 1023 }), (local, from, now, days) => {
        const rewritten = localOf(srs.rewrite(`${local}@${from}`, FORWARDER, now));
        const decoded = srs.decode(rewritten, new Date(now.getTime() + days * DAY_MS));
        expect(decoded.status).toBe('expired');
      }),
      { seed: SEED, numRuns: 300 },
    );
  });

  it('never throws, and calls nothing SRS that does not start like it', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (text) => {
        const decoded = srs.decode(text);
        if (!looksLikeSrs(text)) expect(decoded).toEqual({ status: 'not_srs' });
        else expect(decoded.status).not.toBe('not_srs');
        for (const prefix of ['SRS0=', 'srs1=', 'SRS0+', 'SRS1-']) expect(() => srs.decode(prefix + text)).not.toThrow();
      }),
      { seed: SEED, numRuns: 500 },
    );
  });

  it('wraps another forwarder\'s SRS0 address as SRS1 and sends its bounce back to that forwarder', () => {
    const first = createSrs('the-first-forwarders-own-secret');
    fc.assert(
      fc.property(localPart, domain, when, (local, from, now) => {
        const viaFirst = first.rewrite(`${local}@${from}`, 'first.example', now);
        const viaUs = srs.rewrite(viaFirst, FORWARDER, now);
        expect(viaUs).toMatch(new RegExp(`^SRS1=.{${HASH_LENGTH}}=first\\.example==.+@${FORWARDER}$`));
        // Forwarded once more: still the first forwarder's part, hashed again.
        const again = srs.rewrite(viaUs, 'third.example', now);
        expect(again).toMatch(/^SRS1=.{8}=first\.example==.+@third\.example$/);
        expect(srs.decode(localOf(viaUs), now)).toEqual({ status: 'valid', address: viaFirst });
        expect(srs.decode(localOf(again), now)).toEqual({ status: 'valid', address: viaFirst });
        expect(first.decode(localOf(viaFirst), now)).toEqual({ status: 'valid', address: `${local}@${from}` });
      }),
      { seed: SEED, numRuns: 300 },
    );
  });

  it('keeps the null sender, senders of the forwarding domain and senders it cannot fold', () => {
    expect(srs.rewrite('', FORWARDER)).toBe('');
    expect(srs.rewrite('someone@ALIAS.example', FORWARDER)).toBe('someone@ALIAS.example');
    expect(srs.rewrite('"two words"@sender.test', FORWARDER)).toBe('"two words"@sender.test');
    expect(srs.rewrite('postmaster', FORWARDER)).toBe('postmaster');
  });

  // The edge takes an SRS address back only within 254 octets and without specials in its local
  // part (isSrsLocalPart, apps/mta's srs-recipient.ts); it accepts senders of up to 320 characters
  // and address literals. Folded anyway, such a sender's bounces were refused (501 5.1.3) and lost.
  it('keeps a sender whose SRS address would not be taken back: an address literal, or too long a result', () => {
    for (const sender of ['someone@[192.0.2.1]', 'someone@[IPv6:2001:db8::1]', `${'a'.repeat(64)}@${'b'.repeat(60)}.${'c'.repeat(60)}.${'d'.repeat(50)}.test`]) {
      expect(srs.rewrite(sender, FORWARDER)).toBe(sender);
      const viaFirst = `SRS0=abcd=AB=${sender.split('@')[1]}=${sender.split('@')[0]}@first.example`;
      expect(srs.rewrite(viaFirst, FORWARDER)).toBe(viaFirst);
    }
    // Senders of up to 310 octets: some SRS addresses fit in 254, some do not.
    const longLocal = fc.integer({ min: 1, max: 64 }).map((length) => 'l'.repeat(length));
    const longDomain = fc.array(fc.integer({ min: 1, max: 60 }), { minLength: 2, maxLength: 4 }).map((labels) => `${labels.map((length) => 'd'.repeat(length)).join('.')}.test`);
    fc.assert(
      fc.property(longLocal, longDomain, when, (local, from, now) => {
        const rewritten = srs.rewrite(`${local}@${from}`, FORWARDER, now);
        if (rewritten === `${local}@${from}`) return;
        expect(Buffer.byteLength(rewritten, 'utf8')).toBeLessThanOrEqual(MAX_ADDRESS_OCTETS);
        expect(isSrsLocalPart(localOf(rewritten))).toBe(true);
      }),
      { seed: SEED, numRuns: 500 },
    );
  });

  // Any sender at all (UTF-8, quoted, specials, long): kept as it is, or folded into an address the
  // edge takes back (isSrsLocalPart, 254 octets lower-cased) that decodes to exactly that sender.
  const anySender = fc
    .tuple(
      fc.oneof(localPart, fc.string({ unit: 'grapheme', minLength: 1, maxLength: 40 }), fc.string({ unit: 'binary', minLength: 1, maxLength: 80 }), localPart.map((l) => `"${l}"`)),
      fc.oneof(domain, fc.string({ unit: 'grapheme', minLength: 1, maxLength: 40 }), fc.constant('[192.0.2.1]')),
    )
    .map(([local, from]) => `${local}@${from}`);

  it('any sender is kept, or folded into an address the edge takes back that decodes to it exactly', () => {
    const first = createSrs('the-first-forwarders-own-secret');
    fc.assert(
      fc.property(anySender, when, fc.boolean(), (sender, now, twice) => {
        const original = twice ? first.rewrite(sender, 'first.example', now) : sender;
        const rewritten = srs.rewrite(original, FORWARDER, now);
        if (rewritten === original) return;
        const local = localOf(rewritten);
        expect(isSrsLocalPart(local)).toBe(true);
        expect(Buffer.byteLength(rewritten.toLowerCase(), 'utf8')).toBeLessThanOrEqual(MAX_ADDRESS_OCTETS);
        expect(srs.decode(local, now)).toEqual({ status: 'valid', address: original });
        const lowered = srs.decode(local.toLowerCase(), now);
        expect(lowered.status === 'valid' && lowered.address.toLowerCase()).toBe(original.toLowerCase());
      }),
      { seed: SEED, numRuns: 2000 },
    );
  });

  // One edit anywhere (the prefix, a separator '=', '+' or '-', a character of any kind inserted,
  // removed or replaced): refused, or the same address in another case. Never another address.
  it('no one-character edit of an address we made decodes to another address', () => {
    const first = createSrs('the-first-forwarders-own-secret');
    const edit = fc.tuple(fc.nat(), fc.constantFrom('insert', 'remove', 'replace'), fc.oneof(fc.constantFrom('=', '+', '-', '0', '1', 'S', 's', '.', 'K', '\u212a', '\u0130'), fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 })));
    fc.assert(
      fc.property(anySender, when, fc.boolean(), edit, (sender, now, twice, [pick, how, char]) => {
        const original = twice ? first.rewrite(sender, 'first.example', now) : sender;
        const rewritten = srs.rewrite(original, FORWARDER, now);
        fc.pre(rewritten !== original);
        const local = localOf(rewritten);
        const at = pick % (local.length + 1);
        const tampered = how === 'insert' ? local.slice(0, at) + char + local.slice(at) : local.slice(0, at) + (how === 'replace' ? char : '') + local.slice(at + 1);
        const decoded = srs.decode(tampered, now);
        if (decoded.status === 'valid') expect(decoded.address.toLowerCase()).toBe(original.toLowerCase());
      }),
      { seed: SEED, numRuns: 3000 },
    );
  });

  it('writes the day number modulo 1024 as two base32 characters', () => {
    expect(encodeTimestamp(new Date(0))).toBe('AA');
    expect(encodeTimestamp(new Date(1023 * DAY_MS))).toBe('77');
    expect(encodeTimestamp(new Date(1024 * DAY_MS))).toBe('AA');
    expect(encodeTimestamp(new Date(33 * DAY_MS))).toBe('BB');
  });

  it('refuses a secret that is too short to keep the hash unguessable', () => {
    expect(() => createSrs('short')).toThrow(/at least 16/);
  });
});
