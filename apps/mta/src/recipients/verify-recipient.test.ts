import type { RecipientResolution } from '@postern/shared';
import { describe, expect, it } from 'vitest';
import { EdgeReply } from '../smtp/replies.ts';
import { verifyRecipient } from './verify-recipient.ts';

const accepted: RecipientResolution = {
  status: 'accepted',
  domainId: '1',
  aliasId: '2',
  kind: 'forward',
  viaCatchAll: false,
  targets: ['t@elsewhere.test'],
};

async function replyFor(raw: string, resolve: () => Promise<RecipientResolution>, smtpUtf8 = false): Promise<string> {
  try {
    await verifyRecipient(raw, { smtpUtf8, lookupTimeoutMs: 50, resolve });
    return '250 2.1.5';
  } catch (error) {
    if (!(error instanceof EdgeReply)) throw error;
    return `${error.responseCode} ${error.enhancedCode}`;
  }
}

describe('verifyRecipient: the reply for every outcome of the live lookup', () => {
  it('accepts an alias and hands back its targets, looking up the normal form', async () => {
    let asked = '';
    const result = await verifyRecipient('Sales@Bücher.Example', {
      smtpUtf8: false,
      lookupTimeoutMs: 50,
      resolve: async (address) => {
        asked = address.address;
        return accepted;
      },
    });
    expect(asked).toBe('sales@xn--bcher-kva.example');
    expect(result.targets).toEqual(['t@elsewhere.test']);
  });

  it('answers 550 5.1.1 only when the lookup succeeded and found nothing', async () => {
    expect(await replyFor('x@p.test', async () => ({ status: 'no_such_alias', domainId: '1' }))).toBe('550 5.1.1');
    expect(await replyFor('x@p.test', async () => ({ status: 'alias_disabled', domainId: '1', aliasId: '2' }))).toBe(
      '550 5.1.1',
    );
  });

  it('answers 451 4.3.0 — never 5xx — when the lookup fails or is late', async () => {
    expect(await replyFor('x@p.test', async () => Promise.reject(new Error('ECONNREFUSED')))).toBe('451 4.3.0');
    expect(await replyFor('x@p.test', () => new Promise(() => {}))).toBe('451 4.3.0');
    // A bare Error with no responseCode is exactly what smtp-server would turn into a 550.
    expect(
      await replyFor('x@p.test', async () => {
        throw Object.assign(new Error('relation does not exist'), { code: '42P01' });
      }),
    ).toBe('451 4.3.0');
  });

  it('answers 554 5.7.1 for any domain that is not local, address literals included', async () => {
    expect(await replyFor('x@elsewhere.test', async () => ({ status: 'not_local' }))).toBe('554 5.7.1');
    expect(await replyFor('x@[192.0.2.1]', async () => accepted)).toBe('554 5.7.1');
  });

  it('requires SMTPUTF8 for a non-ASCII local part, only then', async () => {
    expect(await replyFor('jösé@p.test', async () => accepted)).toBe('553 5.6.7');
    expect(await replyFor('jösé@p.test', async () => accepted, true)).toBe('250 2.1.5');
  });
});
