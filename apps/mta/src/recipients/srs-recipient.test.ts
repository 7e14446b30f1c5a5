// RCPT TO an SRS address through the hook (hook-session.testkit.ts): a bounce for forwarded mail is
// accepted with the original sender as its one target; a forged or expired one is 550 5.1.1, not
// the domain's to route; a failed lookup stays 451; and without MAIL_SRS_SECRET nothing is decoded.
import { createSrs } from '@postern/shared';
import { describe, expect, it } from 'vitest';
import { type FakeEdgeOptions, FakeSession, fakeEdge } from '../smtp/hook-session.testkit.ts';
import { srsRecipients } from './srs-recipient.ts';

const DAY_MS = 86_400_000;
const srs = createSrs('a-test-secret-of-enough-length');

async function bounceSession(options: FakeEdgeOptions = {}) {
  const edge = fakeEdge({ srs: srsRecipients(srs), ...options });
  const session = new FakeSession(edge, {});
  await session.connect();
  expect(await session.mailFrom('')).toBe('250');
  return { edge, session };
}

function localOf(address: string): string {
  return address.slice(0, address.lastIndexOf('@'));
}

describe('SRS recipients', () => {
  it('accepts a bounce to an address we made, with the original sender as its one target, in any case', async () => {
    const address = srs.rewrite('Some.One@Sender.test', 'postern.test');
    for (const [received, target] of [
      [address, 'Some.One@sender.test'],
      [address.toLowerCase(), 'some.one@sender.test'],
    ] as const) {
      const { edge, session } = await bounceSession();
      expect(await session.rcptTo(received)).toBe('250');
      expect(edge.context.recipients.get(session.session.envelope.rcptTo[0]!)?.targets).toEqual([target]);
    }
  });

  it('accepts an SRS local part longer than 64 octets (the hash vouches for it)', async () => {
    const { edge, session } = await bounceSession();
    const address = srs.rewrite(`${'a'.repeat(50)}@a-rather-long-sender-domain.test`, 'postern.test');
    expect(localOf(address).length).toBeGreaterThan(64);
    expect(await session.rcptTo(address)).toBe('250');
    expect(edge.context.recipients.get(session.session.envelope.rcptTo[0]!)?.targets).toEqual([`${'a'.repeat(50)}@a-rather-long-sender-domain.test`]);
  });

  it('routes a bounce to an SRS1 address back to the first forwarder', async () => {
    const { edge, session } = await bounceSession();
    const first = createSrs('the-first-forwarders-own-secret').rewrite('someone@sender.test', 'first.test');
    expect(await session.rcptTo(srs.rewrite(first, 'postern.test'))).toBe('250');
    expect(edge.context.recipients.get(session.session.envelope.rcptTo[0]!)?.targets).toEqual([first]);
  });

  it('550 5.1.1 for a forged hash, another secret or an expired timestamp, even with a catch-all', async () => {
    const catchAll: FakeEdgeOptions['resolve'] = async (address) =>
      address.domain === 'postern.test'
        ? { status: 'accepted', domainId: '1', aliasId: '9', kind: 'forward', viaCatchAll: true, targets: ['all@inbox.test'] }
        : { status: 'not_local' };
    const { session } = await bounceSession({ resolve: catchAll });
    const good = srs.rewrite('someone@sender.test', 'postern.test');
    const forged = good.replace(/^SRS0=(.)/, (_, c: string) => `SRS0=${c.toLowerCase() === 'a' ? 'B' : 'A'}`); // differs after case folding too
    const other = createSrs('another-secret-of-enough-length').rewrite('someone@sender.test', 'postern.test');
    const expired = srs.rewrite('someone@sender.test', 'postern.test', new Date(Date.now() - 30 * DAY_MS));
    for (const address of [forged, other, expired, 'SRS0=garbage@postern.test']) {
      expect(await session.rcptTo(address)).toBe(`550 5.1.1 <${address.toLowerCase()}>: recipient address rejected: no such mailbox here`);
    }
    expect(session.session.envelope.rcptTo).toEqual([]);
  });

  // One 550 5.1.1 for all (the sender learns nothing), but counted apart from an unknown alias: a
  // run of srs_forged is someone probing for a relay, or edges and engines given different secrets
  // refusing every bounce; srs_expired is bounces coming back too late.
  it('counts a forged and an expired SRS address apart from unknown recipients', async () => {
    const { edge, session } = await bounceSession();
    const good = srs.rewrite('someone@sender.test', 'postern.test');
    const forged = createSrs('another-secret-of-enough-length').rewrite('someone@sender.test', 'postern.test');
    const expired = srs.rewrite('someone@sender.test', 'postern.test', new Date(Date.now() - 30 * DAY_MS));
    for (const address of [forged, 'SRS0=garbage@postern.test', expired]) expect(await session.rcptTo(address)).toMatch(/^550 5\.1\.1 /);
    expect(await session.rcptTo(good)).toBe('250');
    expect((await edge.metric('mail_mta_rcpt_outcomes_total')).sort()).toEqual([
      'code=250,enhanced=2.1.5,reason=accepted 1',
      'code=550,enhanced=5.1.1,reason=srs_expired 1',
      'code=550,enhanced=5.1.1,reason=srs_forged 2',
    ]);
  });

  it('554 5.7.1 for an SRS address in a domain not ours; 451 4.3.0 when the lookup fails', async () => {
    const { session } = await bounceSession();
    expect(await session.rcptTo(srs.rewrite('someone@sender.test', 'elsewhere.test'))).toMatch(/^554 5\.7\.1 /);
    const failing = await bounceSession({ resolve: () => Promise.reject(new Error('connection terminated')) });
    expect(await failing.session.rcptTo(srs.rewrite('someone@sender.test', 'postern.test'))).toBe(
      '451 4.3.0 Temporary recipient lookup failure, try again later',
    );
  });

  it('an SRS-looking local part with characters no SRS address has goes the ordinary way: 501 5.1.3', async () => {
    const { session } = await bounceSession();
    for (const local of ['SRS0=a b=AA=x.test=y', 'SRS0=a\u0001b=AA=x.test=y', 'SRS0=a"b=AA=x.test=y']) {
      expect(await session.rcptTo(`${local}@postern.test`)).toMatch(/^501 5\.1\.3 /);
    }
  });

  it('without MAIL_SRS_SECRET an SRS address is just an unknown recipient', async () => {
    const { session } = await bounceSession({ srs: null });
    const address = srs.rewrite('someone@sender.test', 'postern.test');
    expect(await session.rcptTo(address)).toBe(`550 5.1.1 <${address.toLowerCase()}>: recipient address rejected: no such mailbox here`);
  });
});
