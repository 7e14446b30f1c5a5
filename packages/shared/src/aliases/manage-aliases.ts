// Creating, enabling and deleting domains and aliases: the one implementation the GraphQL API, the
// tools and the tests all call. Each change is a single SQL statement, read by the very next RCPT:
// the edge keeps no cache, so nothing has to be told of a change (stale-alias-table). The writes
// that change where mail goes (createAlias, setAliasTargets, deleteAlias) also refuse an alias loop
// (alias-cycles.ts) under an advisory lock held to the end of the transaction: given a pool they
// open a transaction, given a client they run inside the one the caller holds.
import pg from 'pg';
import { withTransaction } from '../db/pool.ts';
import { lockAliasGraph, refuseAliasCycle } from './alias-cycles.ts';
import { type AliasKind, aliasDescription, aliasDomain, aliasKind, aliasLocalPart, aliasTargets } from './alias-input.ts';
import { AliasConflictError, DomainNotFoundError, isUniqueViolation } from './errors.ts';
import type { Queryable } from './resolve-recipient.ts';

export interface Domain {
  id: string;
  name: string;
  enabled: boolean;
}

export interface Alias {
  id: string;
  domain: string;
  /** null: the domain's catch-all. */
  localPart: string | null;
  kind: AliasKind;
  enabled: boolean;
  description: string | null;
  targets: string[];
}

/** An alias by id, or by its address (localPart null: the catch-all). */
export type AliasRef = { id: string } | { domain: string; localPart: string | null };

export interface CreateAliasInput {
  domain: string;
  localPart: string | null;
  kind: AliasKind | string;
  targets: readonly string[];
  enabled?: boolean;
  description?: string | null;
}

export async function createDomain(db: Queryable, name: string, options: { enabled?: boolean } = {}): Promise<Domain> {
  const domain = aliasDomain(name);
  try {
    const result = await db.query<Domain>(
      'INSERT INTO mail.domains (name, enabled) VALUES ($1, $2) RETURNING id::text AS id, name, enabled',
      [domain, options.enabled ?? true],
    );
    return result.rows[0] as Domain;
  } catch (error) {
    if (isUniqueViolation(error)) throw new AliasConflictError(`domain ${domain} already exists`, { cause: error });
    throw error;
  }
}

export async function setDomainEnabled(db: Queryable, name: string, enabled: boolean): Promise<Domain> {
  const domain = aliasDomain(name);
  const result = await db.query<Domain>(
    `UPDATE mail.domains SET enabled = $2, updated_at = now() WHERE name = $1
     RETURNING id::text AS id, name, enabled`,
    [domain, enabled],
  );
  const row = result.rows[0];
  if (!row) throw new DomainNotFoundError(domain);
  return row;
}

/** Deletes the domain and, by cascade, its aliases. False when there was no such domain. */
export async function deleteDomain(db: Queryable, name: string): Promise<boolean> {
  const result = await db.query('DELETE FROM mail.domains WHERE name = $1', [aliasDomain(name)]);
  return (result.rowCount ?? 0) > 0;
}

// The alias and its targets in one statement: no reader can ever see the alias without them.
const CREATE_ALIAS_SQL = `
WITH d AS (SELECT id, name FROM mail.domains WHERE name = $1),
     a AS (INSERT INTO mail.aliases (domain_id, local_part, kind, enabled, description)
           SELECT d.id, $2, $3, $4, $5 FROM d
           RETURNING id, local_part, kind, enabled, description),
     t AS (INSERT INTO mail.alias_targets (alias_id, address)
           SELECT a.id, target FROM a, unnest($6::text[]) AS target)
SELECT a.id::text AS id, d.name AS domain, a.local_part AS "localPart", a.kind, a.enabled, a.description
  FROM a, d`;

/** `work` in a transaction: the pool's own, or the one the caller's client is already in. */
function inTransaction<T>(db: Queryable, work: (tx: Queryable) => Promise<T>): Promise<T> {
  return db instanceof pg.Pool ? withTransaction(db, work) : work(db);
}

export async function createAlias(db: Queryable, input: CreateAliasInput): Promise<Alias> {
  const domain = aliasDomain(input.domain);
  const localPart = aliasLocalPart(input.localPart);
  const kind = aliasKind(input.kind);
  const targets = aliasTargets(input.targets);
  const description = aliasDescription(input.description);
  return inTransaction(db, async (tx) => {
    await lockAliasGraph(tx);
    await refuseAliasCycle(tx, { domain, localPart }, targets);
    return insertAlias(tx, { domain, localPart, kind, targets, enabled: input.enabled ?? true, description });
  });
}

interface AliasRowInput {
  domain: string;
  localPart: string | null;
  kind: AliasKind;
  targets: string[];
  enabled: boolean;
  description: string | null;
}

async function insertAlias(db: Queryable, input: AliasRowInput): Promise<Alias> {
  const { domain, localPart, kind, targets } = input;
  try {
    const result = await db.query<Omit<Alias, 'targets'>>(CREATE_ALIAS_SQL, [
      domain,
      localPart,
      kind,
      input.enabled,
      input.description,
      targets,
    ]);
    const row = result.rows[0];
    if (!row) throw new DomainNotFoundError(domain);
    return { ...row, targets: [...targets].sort() };
  } catch (error) {
    if (isUniqueViolation(error)) {
      const what = localPart === null ? `a catch-all for ${domain}` : `${localPart}@${domain}`;
      throw new AliasConflictError(`${what} already exists`, { cause: error });
    }
    throw error;
  }
}

// Every statement below finds its alias the same way, written out in full: by id ($1), or, when $1
// is null, by address ($2 the domain, $3 the local part, null for the catch-all). With the values
// bound, PostgreSQL folds the branch not taken away, so each lookup still uses its index.

/** The parameters $1..$3 of an AliasRef, for the alias lookup every statement here starts with. */
function aliasRefParams(ref: AliasRef): [id: string | null, domain: string | null, localPart: string | null] {
  if ('id' in ref) return [ref.id, null, null];
  return [null, aliasDomain(ref.domain), aliasLocalPart(ref.localPart)];
}

const GET_ALIAS_SQL = `
SELECT al.id::text AS id,
       (SELECT name FROM mail.domains WHERE id = al.domain_id) AS domain,
       al.local_part AS "localPart", al.kind, al.enabled, al.description,
       ARRAY(SELECT address FROM mail.alias_targets WHERE alias_id = al.id ORDER BY address) AS targets
  FROM mail.aliases al
 WHERE (al.id = $1::bigint
        OR ($1::bigint IS NULL AND al.domain_id = (SELECT id FROM mail.domains WHERE name = $2::text)
            AND al.local_part IS NOT DISTINCT FROM $3::text))`;

export async function getAlias(db: Queryable, ref: AliasRef): Promise<Alias | null> {
  const result = await db.query<Alias>(GET_ALIAS_SQL, aliasRefParams(ref));
  return result.rows[0] ?? null;
}

const SET_ALIAS_ENABLED_SQL = `
UPDATE mail.aliases al SET enabled = $4, updated_at = now()
 WHERE (al.id = $1::bigint
        OR ($1::bigint IS NULL AND al.domain_id = (SELECT id FROM mail.domains WHERE name = $2::text)
            AND al.local_part IS NOT DISTINCT FROM $3::text))
RETURNING al.id::text AS id,
          (SELECT name FROM mail.domains WHERE id = al.domain_id) AS domain,
          al.local_part AS "localPart", al.kind, al.enabled, al.description,
          ARRAY(SELECT address FROM mail.alias_targets WHERE alias_id = al.id ORDER BY address) AS targets`;

/** Enables or disables an alias; the edge refuses a disabled one on the very next RCPT. Null: no such alias. */
export async function setAliasEnabled(db: Queryable, ref: AliasRef, enabled: boolean): Promise<Alias | null> {
  const result = await db.query<Alias>(SET_ALIAS_ENABLED_SQL, [...aliasRefParams(ref), enabled]);
  return result.rows[0] ?? null;
}

const SET_ALIAS_TARGETS_SQL = `
WITH al AS (SELECT al.id FROM mail.aliases al
             WHERE (al.id = $1::bigint
                    OR ($1::bigint IS NULL AND al.domain_id = (SELECT id FROM mail.domains WHERE name = $2::text)
                        AND al.local_part IS NOT DISTINCT FROM $3::text))),
     gone AS (DELETE FROM mail.alias_targets t USING al
               WHERE t.alias_id = al.id AND NOT (t.address = ANY ($4::text[]))),
     added AS (INSERT INTO mail.alias_targets (alias_id, address)
               SELECT al.id, target FROM al, unnest($4::text[]) AS target
               ON CONFLICT (alias_id, address) DO NOTHING)
UPDATE mail.aliases a SET updated_at = now() FROM al WHERE a.id = al.id RETURNING a.id::text AS id`;

/** Replaces the targets (forward) or members (list) of an alias in one statement. Null: no such alias. */
export async function setAliasTargets(db: Queryable, ref: AliasRef, targets: readonly string[]): Promise<Alias | null> {
  const normalized = aliasTargets(targets);
  return inTransaction(db, async (tx) => {
    await lockAliasGraph(tx);
    const current = await getAlias(tx, ref);
    if (!current) return null;
    await refuseAliasCycle(tx, { domain: current.domain, localPart: current.localPart }, normalized);
    const result = await tx.query<{ id: string }>(SET_ALIAS_TARGETS_SQL, [current.id, null, null, normalized]);
    const row = result.rows[0];
    if (!row) return null;
    return { ...((await getAlias(tx, { id: row.id })) as Alias), targets: [...normalized].sort() };
  });
}

const DELETE_ALIAS_SQL = `
DELETE FROM mail.aliases al
 WHERE (al.id = $1::bigint
        OR ($1::bigint IS NULL AND al.domain_id = (SELECT id FROM mail.domains WHERE name = $2::text)
            AND al.local_part IS NOT DISTINCT FROM $3::text))`;

/**
 * Deletes an alias and its targets. False when there was no such alias. Deleting an exact alias
 * hands its address to the domain's catch-all, which can close a loop through it: checked after
 * the delete, in the same transaction, and refused (rolled back) if so.
 */
export async function deleteAlias(db: Queryable, ref: AliasRef): Promise<boolean> {
  return inTransaction(db, async (tx) => {
    await lockAliasGraph(tx);
    const alias = await getAlias(tx, ref);
    if (!alias) return false;
    const result = await tx.query(DELETE_ALIAS_SQL, [alias.id, null, null]);
    if (alias.localPart !== null) {
      const catchAll = await getAlias(tx, { domain: alias.domain, localPart: null });
      if (catchAll) await refuseAliasCycle(tx, { domain: catchAll.domain, localPart: null }, catchAll.targets);
    }
    return (result.rowCount ?? 0) > 0;
  });
}
