import { describe, expect, it } from 'vitest';
import { AcceptLedger, transactionFingerprint } from './accept-ledger.ts';
import type { AcceptedMessage } from './accept-message.ts';

const facts = { envelopeFrom: 'a@x.test', envelopeTo: ['b@y.test'], smtpUtf8: false, bodyType: null, data: Buffer.from('Subject: s\r\n\r\nhi\r\n') };

function deferred() {
  let resolve!: (value: AcceptedMessage) => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<AcceptedMessage>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('transactionFingerprint', () => {
  it('differs when any part of the envelope or a byte of the data differs', () => {
    const base = transactionFingerprint(facts);
    expect(transactionFingerprint({ ...facts })).toBe(base);
    expect(transactionFingerprint({ ...facts, envelopeFrom: 'a@x.tesT' })).not.toBe(base);
    expect(transactionFingerprint({ ...facts, envelopeTo: ['b@y.test', 'c@y.test'] })).not.toBe(base);
    expect(transactionFingerprint({ ...facts, bodyType: '8bitmime' })).not.toBe(base);
    expect(transactionFingerprint({ ...facts, data: Buffer.from('Subject: s\r\n\r\nhi!\r\n') })).not.toBe(base);
    // Field boundaries are part of the hash: moving text from one field to another changes it.
    expect(transactionFingerprint({ ...facts, envelopeFrom: 'a@x.test1', envelopeTo: ['b@y.test'] })).not.toBe(
      transactionFingerprint({ ...facts, envelopeFrom: 'a@x.test', envelopeTo: ['1b@y.test'] }),
    );
  });
});

describe('AcceptLedger', () => {
  it('answers a retry that arrives while the first accept is undecided with the first outcome', async () => {
    const ledger = new AcceptLedger({ windowMs: 60_000, maxEntries: 10 });
    const first = deferred();
    let stores = 0;
    const one = ledger.accept('f', () => {
      stores += 1;
      return first.promise;
    });
    const retry = ledger.accept('f', async () => {
      stores += 1;
      return { messageId: 'second', deliveryIds: [] };
    });
    first.resolve({ messageId: 'first', deliveryIds: ['d'] });
    expect(await one).toEqual({ messageId: 'first', deliveryIds: ['d'], duplicate: false });
    expect(await retry).toEqual({ messageId: 'first', deliveryIds: ['d'], duplicate: true });
    expect(stores).toBe(1);
  });

  it('lets the retry store the message when the first accept is known to have failed', async () => {
    const ledger = new AcceptLedger({ windowMs: 60_000, maxEntries: 10 });
    const first = deferred();
    const one = ledger.accept('f', () => first.promise);
    const retry = ledger.accept('f', async () => ({ messageId: 'second', deliveryIds: [] }));
    first.reject(new Error('57014'));
    await expect(one).rejects.toThrow('57014');
    expect(await retry).toEqual({ messageId: 'second', deliveryIds: [], duplicate: false });
  });

  it('remembers a commit for the window only, and at most maxEntries of them', async () => {
    let now = 0;
    const ledger = new AcceptLedger({ windowMs: 1_000, maxEntries: 2, now: () => now });
    await ledger.accept('f', async () => ({ messageId: 'm1', deliveryIds: [] }));
    now = 999;
    expect((await ledger.accept('f', async () => ({ messageId: 'm2', deliveryIds: [] }))).messageId).toBe('m1');
    now = 1_001;
    expect((await ledger.accept('f', async () => ({ messageId: 'm3', deliveryIds: [] }))).messageId).toBe('m3');
    await ledger.accept('g', async () => ({ messageId: 'g', deliveryIds: [] }));
    await ledger.accept('h', async () => ({ messageId: 'h', deliveryIds: [] }));
    await ledger.accept('i', async () => ({ messageId: 'i', deliveryIds: [] }));
    expect(ledger.size).toBeLessThanOrEqual(3);
    expect((await ledger.accept('f', async () => ({ messageId: 'm4', deliveryIds: [] }))).messageId).toBe('m4');
  });
});

describe('AcceptLedger with an undecided first accept', () => {
  it('gives a waiting retry the same undecided error instead of storing the message a second time', async () => {
    class Undecided extends Error {}
    const ledger = new AcceptLedger({ windowMs: 60_000, maxEntries: 10, isUndecided: (error) => error instanceof Undecided });
    const first = deferred();
    let stores = 0;
    const one = ledger.accept('f', () => first.promise);
    const retry = ledger.accept('f', async () => {
      stores += 1;
      return { messageId: 'second', deliveryIds: [] };
    });
    first.reject(new Undecided('stopped'));
    await expect(one).rejects.toBeInstanceOf(Undecided);
    await expect(retry).rejects.toBeInstanceOf(Undecided);
    expect(stores).toBe(0);
  });
});
