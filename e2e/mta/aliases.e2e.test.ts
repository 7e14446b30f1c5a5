// The shared alias code (packages/shared/src/aliases) against a real database: what the API will
// call, and what the edge reads on every RCPT.
import {
  AliasConflictError,
  AliasInputError,
  createAlias,
  createDomain,
  DomainNotFoundError,
  deleteAlias,
  deleteDomain,
  getAlias,
  resolveRecipient,
  setAliasEnabled,
  setAliasTargets,
  setDomainEnabled,
  normalizeAddress,
} from '@postern/shared';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase, waitFor } from '../harness/index.ts';

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

  it('every change is announced on mail_alias_changed (for any future positive cache)', async () => {
    const listener = new pg.Client({ connectionString: db.dsn });
    await listener.connect();
    const payloads: string[] = [];
    listener.on('notification', (message) => payloads.push(message.payload ?? ''));
    await listener.query('LISTEN mail_alias_changed');
    try {
      const domain = await createDomain(db.pool, 'notify.test');
      await createAlias(db.pool, { domain: 'notify.test', localPart: 'a', kind: 'forward', targets: ['a@t.test'] });
      await waitFor('a notification naming the domain', () => payloads, (seen) => seen.includes(domain.id));
    } finally {
      await listener.end();
    }
  });
});
