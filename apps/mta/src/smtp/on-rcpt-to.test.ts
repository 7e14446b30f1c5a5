// RCPT TO through the hook, without a socket (hook-session.testkit.ts): the live lookup faked, so
// that every reply class is reached — and a 5xx only ever when the lookup answered (stale-alias-table).
import type { RecipientResolution } from '@postern/shared';
import { describe, expect, it } from 'vitest';
import { acceptedDesk, type FakeEdgeOptions, FakeSession, fakeEdge, resolveDesk } from './hook-session.testkit.ts';

async function inTransaction(options: FakeEdgeOptions = {}, client: { remoteAddress?: string } = {}) {
  const edge = fakeEdge(options);
  const session = new FakeSession(edge, client);
  await session.connect();
  expect(await session.mailFrom('sender@outside.test')).toBe('250');
  return { edge, session };
}

describe('onRcptTo', () => {
  it('250 for a live alias, recording what it resolved to for DATA', async () => {
    const { edge, session } = await inTransaction();
    expect(await session.rcptTo('Desk@Postern.TEST')).toBe('250');
    const entry = session.session.envelope.rcptTo[0];
    expect(entry && edge.context.recipients.get(entry)).toEqual({
      address: expect.objectContaining({ address: 'desk@postern.test' }),
      targets: ['desk@inbox.test'],
    });
    expect(await edge.metric('mail_mta_rcpt_outcomes_total')).toEqual(['code=250,enhanced=2.1.5,reason=accepted 1']);
  });

  it('550 5.1.1 only when the lookup answered that nothing is there (no alias, disabled, no targets)', async () => {
    const answers: Record<string, RecipientResolution> = {
      'gone@postern.test': { status: 'no_such_alias', domainId: '1' },
      'off@postern.test': { status: 'alias_disabled', domainId: '1', aliasId: '2' },
      'empty@postern.test': { status: 'no_targets', domainId: '1', aliasId: '3' },
    };
    const { session } = await inTransaction({ resolve: async (address) => answers[address.address] ?? resolveDesk(address) });
    for (const address of Object.keys(answers)) {
      expect(await session.rcptTo(address)).toBe(`550 5.1.1 <${address}>: recipient address rejected: no such mailbox here`);
    }
    expect(session.session.envelope.rcptTo).toEqual([]);
  });

  it('554 5.7.1 for a domain not ours and for an address literal: no open relay', async () => {
    const { session } = await inTransaction();
    expect(await session.rcptTo('someone@elsewhere.test')).toBe('554 5.7.1 <someone@elsewhere.test>: relay access denied');
    expect(await session.rcptTo('someone@[192.0.2.1]')).toBe('554 5.7.1 <someone@[192.0.2.1]>: relay access denied');
  });

  it('451 4.3.0 when the lookup fails or does not answer within the deadline, never 5xx', async () => {
    const failing = await inTransaction({ resolve: () => Promise.reject(new Error('connection terminated')) });
    expect(await failing.session.rcptTo('desk@postern.test')).toBe('451 4.3.0 Temporary recipient lookup failure, try again later');
    const hung = await inTransaction({ limits: { lookupTimeoutMs: 20 }, resolve: () => new Promise(() => {}) });
    expect(await hung.session.rcptTo('desk@postern.test')).toBe('451 4.3.0 Temporary recipient lookup failure, try again later');
    expect(await hung.edge.metric('mail_mta_rcpt_outcomes_total')).toEqual(['code=451,enhanced=4.3.0,reason=lookup_failed 1']);
  });

  it('501 5.1.3 for an address the parser refuses, 553 5.6.7 for a non-ASCII local part without SMTPUTF8', async () => {
    const { session } = await inTransaction();
    expect(await session.rcptTo(`${'x'.repeat(65)}@postern.test`)).toMatch(/^501 5\.1\.3 <x+@postern\.test>: bad address syntax \(/);
    expect(await session.rcptTo('jürgen@postern.test')).toBe('553 5.6.7 <jürgen@postern.test>: non-ASCII address without SMTPUTF8');
  });

  it('452 4.5.3 past MAIL_MTA_MAX_RECIPIENTS; a repeat of an accepted address is not counted twice', async () => {
    const { session } = await inTransaction({ resolve: async (address) => ({ ...acceptedDesk, targets: [`${address.localPart}@inbox.test`] }) });
    for (const name of ['a', 'b', 'c']) expect(await session.rcptTo(`${name}@postern.test`)).toBe('250');
    expect(await session.rcptTo('d@postern.test')).toBe('452 4.5.3 Too many recipients (at most 3 per message)');
    expect(await session.rcptTo('B@postern.test')).toBe('250');
    expect(session.session.envelope.rcptTo.map((entry) => entry.address)).toEqual(['a@postern.test', 'B@postern.test', 'c@postern.test']);
  });

  it('452 4.5.3 past MAIL_MTA_MAX_RCPT_COMMANDS, repeats and refusals included, until the next transaction', async () => {
    const { session } = await inTransaction();
    for (let i = 0; i < 3; i++) expect(await session.rcptTo('desk@postern.test')).toBe('250');
    for (let i = 0; i < 3; i++) expect(await session.rcptTo('nobody@postern.test')).toMatch(/^550 /);
    expect(await session.rcptTo('desk@postern.test')).toBe('452 4.5.3 Too many RCPT commands (at most 6 per transaction)');
    expect(await session.mailFrom('sender@outside.test')).toBe('250');
    expect(await session.rcptTo('desk@postern.test')).toBe('250');
  });

  it('451 4.3.2 when the client network already holds its lookup slots for the whole deadline', async () => {
    let release = () => {};
    const held = new Promise<RecipientResolution>((resolve) => {
      release = () => resolve(acceptedDesk);
    });
    const edge = fakeEdge({ limits: { clientLookupConcurrency: 1, lookupTimeoutMs: 30 }, resolve: () => held });
    const [first, second, other] = [new FakeSession(edge), new FakeSession(edge), new FakeSession(edge, { remoteAddress: '198.51.100.7' })];
    for (const session of [first, second, other]) await session.mailFrom('sender@outside.test');
    const slow = first.rcptTo('desk@postern.test');
    expect(await second.rcptTo('desk@postern.test')).toBe(
      '451 4.3.2 Too many concurrent recipient lookups from your network (at most 1), try again later',
    );
    // Another network has slots of its own (its lookup times out on the held answer: 451 4.3.0).
    expect(await other.rcptTo('desk@postern.test')).toBe('451 4.3.0 Temporary recipient lookup failure, try again later');
    release();
    expect(await slow).toBe('451 4.3.0 Temporary recipient lookup failure, try again later');
  });
});
