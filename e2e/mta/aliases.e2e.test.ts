// The shared alias code (packages/shared/src/aliases) against a real database: what the API
// calls, and what the edge reads on every RCPT.
import {
  AliasConflictError,
  AliasInputError,
  createAlias,
  createDomain,
  DomainNotFoundError,
  deleteAlias,
  deleteDomain,
  getAlias,
  normalizeAddress,
  resolveRecipient,
  resolveRecipients,
  setAliasEnabled,
  setAliasTargets,
  setDomainEnabled,
} from '@postern/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../harness/index.ts';
import { openSession, startTestEdge } from './helpers/edge.ts';
import { dataPayload, simpleMessage } from './helpers/smtp-client.ts';

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase('mta-aliases');
});

afterAll(async () => {
  await db?.drop();
});

const resolve = (address: string) => resolveRecipient(db.pool, normalizeAddress(address));

describe('shared alias code', () => {
  it('creates domains and aliases in the one normal form, and resolves them', async () => {
    const domain = await createDomain(db.pool, 'Bücher.Example');
    expect(domain).toMatchObject({ name: 'xn--bcher-kva.example', enabled: true });
    const alias = await createAlias(db.pool, {
      domain: 'BÜCHER.example',
      localPart: 'Orders',
      kind: 'list',
      targets: ['B@Shop.test', 'a@shop.test', 'b@shop.TEST'],
      description: 'order desk',
    });
    expect(alias).toMatchObject({ domain: 'xn--bcher-kva.example', localPart: 'orders', kind: 'list', enabled: true, targets: ['a@shop.test', 'b@shop.test'] });
    expect(await resolve('ORDERS@xn--bcher-kva.example')).toMatchObject({ status: 'accepted', kind: 'list', viaCatchAll: false, targets: ['a@shop.test', 'b@shop.test'] });
    expect(await resolve('other@bücher.example')).toMatchObject({ status: 'no_such_alias' });
    expect(await resolve('orders@elsewhere.test')).toEqual({ status: 'not_local' });
  });

  it('refuses duplicates, a second catch-all, unknown domains and bad input with typed errors', async () => {
    await createDomain(db.pool, 'dup.test');
    await expect(createDomain(db.pool, 'DUP.test')).rejects.toBeInstanceOf(AliasConflictError);
    await createAlias(db.pool, { domain: 'dup.test', localPart: 'x', kind: 'forward', targets: ['t@t.test'] });
    await expect(createAlias(db.pool, { domain: 'dup.test', localPart: 'X', kind: 'forward', targets: ['t@t.test'] })).rejects.toThrow(/x@dup\.test already exists/);
    await createAlias(db.pool, { domain: 'dup.test', localPart: null, kind: 'forward', targets: ['all@t.test'] });
    await expect(createAlias(db.pool, { domain: 'dup.test', localPart: null, kind: 'forward', targets: ['all@t.test'] })).rejects.toThrow(/catch-all for dup\.test already exists/);
    await expect(createAlias(db.pool, { domain: 'missing.test', localPart: 'x', kind: 'forward', targets: ['t@t.test'] })).rejects.toBeInstanceOf(DomainNotFoundError);
    await expect(createAlias(db.pool, { domain: 'dup.test', localPart: 'y', kind: 'forward', targets: [] })).rejects.toBeInstanceOf(AliasInputError);
  });

  it('enables, disables, retargets and deletes by address or id; the catch-all never rescues a disabled alias', async () => {
    await createDomain(db.pool, 'edit.test');
    const alias = await createAlias(db.pool, { domain: 'edit.test', localPart: 'desk', kind: 'forward', targets: ['one@t.test'] });
    await createAlias(db.pool, { domain: 'edit.test', localPart: null, kind: 'forward', targets: ['all@t.test'] });
    expect(await setAliasEnabled(db.pool, { domain: 'edit.test', localPart: 'DESK' }, false)).toMatchObject({ enabled: false });
    expect(await resolve('desk@edit.test')).toMatchObject({ status: 'alias_disabled' });
    expect(await resolve('anyone@edit.test')).toMatchObject({ status: 'accepted', viaCatchAll: true });
    await setAliasEnabled(db.pool, { id: alias.id }, true);
    expect(await setAliasTargets(db.pool, { id: alias.id }, ['two@t.test', 'three@t.test'])).toMatchObject({ targets: ['three@t.test', 'two@t.test'] });
    expect(await resolve('desk@edit.test')).toMatchObject({ targets: ['three@t.test', 'two@t.test'] });
    expect(await deleteAlias(db.pool, { domain: 'edit.test', localPart: 'desk' })).toBe(true);
    expect(await getAlias(db.pool, { id: alias.id })).toBeNull();
    expect(await deleteAlias(db.pool, { id: alias.id })).toBe(false);
    expect(await setAliasEnabled(db.pool, { id: alias.id }, true)).toBeNull();
    await setDomainEnabled(db.pool, 'edit.test', false);
    expect(await resolve('anyone@edit.test')).toEqual({ status: 'not_local' });
    expect(await deleteDomain(db.pool, 'edit.test')).toBe(true);
  });

  // The edge sends the RCPTs of one event-loop turn in one statement (apps/mta/src/recipients/
  // lookup-batcher.ts): it must answer each address exactly as the one-address statement does.
  it('resolves several addresses in one statement exactly as one at a time, in order, repeats included', async () => {
    await createDomain(db.pool, 'many.test');
    await createDomain(db.pool, 'many-off.test');
    await createDomain(db.pool, 'many-all.test');
    await createAlias(db.pool, { domain: 'many.test', localPart: 'list', kind: 'list', targets: ['b@t.test', 'a@t.test'] });
    const off = await createAlias(db.pool, { domain: 'many.test', localPart: 'off', kind: 'forward', targets: ['o@t.test'] });
    await setAliasEnabled(db.pool, { id: off.id }, false);
    const empty = await createAlias(db.pool, { domain: 'many.test', localPart: 'empty', kind: 'forward', targets: ['e@t.test'] });
    await db.pool.query('DELETE FROM mail.alias_targets WHERE alias_id = $1', [empty.id]);
    await createAlias(db.pool, { domain: 'many-all.test', localPart: null, kind: 'forward', targets: ['all@t.test'] });
    const offAll = await createAlias(db.pool, { domain: 'many-all.test', localPart: 'off', kind: 'forward', targets: ['x@t.test'] });
    await setAliasEnabled(db.pool, { id: offAll.id }, false);
    await createAlias(db.pool, { domain: 'many-off.test', localPart: 'desk', kind: 'forward', targets: ['d@t.test'] });
    await setDomainEnabled(db.pool, 'many-off.test', false);
    const addresses = [
      'list@many.test', 'off@many.test', 'empty@many.test', 'nobody@many.test', 'anyone@many-all.test', 'off@many-all.test',
      'desk@many-off.test', 'x@nowhere.test', 'list@many.test', 'LIST@Many.Test',
    ].map(normalizeAddress);
    const one = await Promise.all(addresses.map((address) => resolveRecipient(db.pool, address)));
    expect(one.map((resolution) => resolution.status)).toEqual([
      'accepted', 'alias_disabled', 'no_targets', 'no_such_alias', 'accepted', 'alias_disabled', 'not_local', 'not_local', 'accepted', 'accepted',
    ]);
    expect(await resolveRecipients(db.pool, addresses)).toEqual(one);
    expect(await resolveRecipients(db.pool, addresses.slice().reverse())).toEqual(one.slice().reverse());
    expect(await resolveRecipients(db.pool, addresses.slice(3, 4))).toEqual(one.slice(3, 4));
  });

  // No cache stands between the tables and a RCPT, so nothing has to be told of a change: whoever
  // makes it (the shared code, or plain SQL as an operator's psql would), the very next RCPT of a
  // session already open reads it (stale-alias-table).
  it('every change, through the shared code or plain SQL, is what the very next RCPT of an open session sees', async () => {
    await createDomain(db.pool, 'next.test');
    const edge = await startTestEdge(db.dsn);
    const client = await openSession(edge);
    const rcpt = async (address: string) => (await client.command(`RCPT TO:<${address}>`)).raw.slice(0, 9);
    try {
      expect((await client.command('MAIL FROM:<sender@outside.test>')).code).toBe(250);
      expect(await rcpt('desk@next.test')).toBe('550 5.1.1');
      const alias = await createAlias(db.pool, { domain: 'next.test', localPart: 'desk', kind: 'forward', targets: ['one@t.test'] });
      expect(await rcpt('desk@next.test')).toBe('250 2.1.5');
      await db.pool.query('UPDATE mail.aliases SET enabled = false WHERE id = $1', [alias.id]);
      expect(await rcpt('desk@next.test')).toBe('550 5.1.1');
      await setAliasEnabled(db.pool, { id: alias.id }, true);
      expect(await rcpt('desk@next.test')).toBe('250 2.1.5');
      await db.pool.query("UPDATE mail.domains SET enabled = false WHERE name = 'next.test'");
      expect(await rcpt('desk@next.test')).toBe('554 5.7.1');
      await setDomainEnabled(db.pool, 'next.test', true);
      expect(await rcpt('desk@next.test')).toBe('250 2.1.5');
      // The targets too are read at RCPT: the message goes where the alias points now.
      await db.pool.query("UPDATE mail.alias_targets SET address = 'two@t.test' WHERE alias_id = $1", [alias.id]);
      expect(await rcpt('desk@next.test')).toBe('250 2.1.5');
      expect((await client.command('DATA')).code).toBe(354);
      await client.write(dataPayload(simpleMessage('retargeted')));
      const queued = /^250 2\.0\.0 queued as (\S+)$/.exec((await client.readReply()).raw)?.[1];
      const { rows } = await db.pool.query('SELECT recipient FROM mail.deliveries WHERE message_id = $1', [queued]);
      expect(rows).toEqual([{ recipient: 'two@t.test' }]);
      expect((await client.command('MAIL FROM:<sender@outside.test>')).code).toBe(250);
      await db.pool.query('DELETE FROM mail.aliases WHERE id = $1', [alias.id]);
      expect(await rcpt('desk@next.test')).toBe('550 5.1.1');
    } finally {
      await client.quit();
      await edge.stop();
    }
  });
});
