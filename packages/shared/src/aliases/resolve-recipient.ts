// The live lookup behind every RCPT TO: one indexed statement against the alias tables, no files,
// no negative cache (stale-alias-table: a generated alias file went stale on one MX and senders cached the
// 550). Callers put their own deadline around it; here a failure is simply thrown.
import type { NormalizedAddress } from '../addresses/normalize-address.ts';
import type { Pool, PoolClient } from '../db/pool.ts';
import type { AliasKind } from './alias-input.ts';

export type Queryable = Pick<Pool | PoolClient, 'query'>;

export type RecipientResolution =
  /** The domain is not one of ours (or is disabled): accepting would make us an open relay. */
  | { status: 'not_local' }
  /** Ours, and nothing answers to this local part: neither an alias nor a catch-all. */
  | { status: 'no_such_alias'; domainId: string }
  /** The exact alias exists but is disabled. It does not fall through to the catch-all: disabling
   *  an address must refuse it even on a domain that has one. */
  | { status: 'alias_disabled'; domainId: string; aliasId: string }
  /** Defensive: the write code never leaves an alias without targets, but psql can. */
  | { status: 'no_targets'; domainId: string; aliasId: string }
  | {
      status: 'accepted';
      domainId: string;
      aliasId: string;
      kind: AliasKind;
      viaCatchAll: boolean;
      /** Normalised target addresses, sorted; what one delivery each is made for. */
      targets: string[];
    };

interface ResolutionRow {
  domain_id: string;
  alias_id: string | null;
  kind: AliasKind | null;
  enabled: boolean | null;
  catch_all: boolean | null;
  targets: string[] | null;
}

// The live lookup of one or more addresses in one statement (the edge's LookupBatcher: RCPTs that
// arrive in the same turn of its event loop share one round trip), each row numbered by its
// address's position. For each address the exact local part wins over the catch-all (ORDER BY
// local_part NULLS LAST), whether enabled or not; both probes use the (domain_id, local_part) unique
// index. Targets come in the same statement.
const RESOLVE_SQL = `
SELECT r.ord::int AS ord,
       d.id::text AS domain_id,
       a.id::text AS alias_id,
       a.kind,
       a.enabled,
       a.local_part IS NULL AS catch_all,
       CASE WHEN a.id IS NULL THEN NULL ELSE
         ARRAY(SELECT t.address FROM mail.alias_targets t WHERE t.alias_id = a.id ORDER BY t.address)
       END AS targets
  FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS r(domain, local_part, ord)
  JOIN mail.domains d ON d.name = r.domain AND d.enabled
  LEFT JOIN LATERAL (
        SELECT al.id, al.kind, al.enabled, al.local_part
          FROM mail.aliases al
         WHERE al.domain_id = d.id AND (al.local_part = r.local_part OR al.local_part IS NULL)
         ORDER BY al.local_part NULLS LAST
         LIMIT 1) a ON true`;

function resolutionOf(row: ResolutionRow | undefined): RecipientResolution {
  if (!row) return { status: 'not_local' };
  if (row.alias_id === null) return { status: 'no_such_alias', domainId: row.domain_id };
  if (!row.enabled) {
    // A disabled catch-all is as good as none.
    return row.catch_all
      ? { status: 'no_such_alias', domainId: row.domain_id }
      : { status: 'alias_disabled', domainId: row.domain_id, aliasId: row.alias_id };
  }
  const targets = row.targets ?? [];
  if (targets.length === 0) return { status: 'no_targets', domainId: row.domain_id, aliasId: row.alias_id };
  return {
    status: 'accepted',
    domainId: row.domain_id,
    aliasId: row.alias_id,
    kind: row.kind as AliasKind,
    viaCatchAll: row.catch_all === true,
    targets,
  };
}

/** The resolution of one address (one statement, one round trip). */
export async function resolveRecipient(db: Queryable, address: NormalizedAddress): Promise<RecipientResolution> {
  return (await resolveRecipients(db, [address]))[0] as RecipientResolution;
}

/** The resolution of each address, in one statement; in the same order as the addresses. */
export async function resolveRecipients(db: Queryable, addresses: readonly NormalizedAddress[]): Promise<RecipientResolution[]> {
  const result = await db.query<ResolutionRow & { ord: number }>({
    // A named statement is parsed and planned once per connection: this runs on every RCPT.
    name: 'postern_resolve_recipients',
    text: RESOLVE_SQL,
    values: [addresses.map((address) => address.domain), addresses.map((address) => address.localPart)],
  });
  const rows = new Map(result.rows.map((row) => [row.ord, row]));
  return addresses.map((_, index) => resolutionOf(rows.get(index + 1)));
}
