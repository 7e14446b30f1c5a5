// Alias loops, refused when an alias is written. An alias whose targets reach back to itself through
// local aliases (directly, through others, or through a catch-all) would pass mail around forever:
// the edge accepts for the alias, the engine relays to the targets, the relay hands mail for our own
// domains back to the edge. Expansion at the edge is one level only (resolve-recipient.ts), so the
// loop runs through SMTP and the hop limit (Received: count) is what finally cuts one that the data
// still has (rows written by psql); this check makes sure no write through Postern creates one.
//
// Every alias counts, enabled or not, and every domain, enabled or not: enabling one later must not
// be able to close a loop that nothing checks then.
import { AliasCycleError } from './errors.ts';
import type { Queryable } from './resolve-recipient.ts';

/** The alias being written: its address (localPart null: the catch-all) and its new targets. */
export interface AliasNode {
  domain: string;
  localPart: string | null;
}

/** Bounds on the walk: the data may hold loops (psql) or be large; the check must still end. */
const MAX_VISITED_ALIASES = 10_000;
const MAX_DEPTH = 64;

// Writers of aliases take this lock for the duration of their transaction, so that two concurrent
// writes (a -> b and b -> a) cannot each miss the other's half of a loop. Alias writes are rare.
const ALIAS_GRAPH_LOCK_SQL = 'SELECT pg_advisory_xact_lock(7348100412660511781)';

// For each target address (local part, domain): the alias it resolves to, the exact one before the
// catch-all, as the edge resolves it (resolve-recipient.ts), ignoring `enabled` on purpose.
const RESOLVE_TARGETS_SQL = `
SELECT q.local_part AS "targetLocal", q.domain AS "targetDomain",
       a.id::text AS id, a.local_part AS "localPart",
       ARRAY(SELECT t.address FROM mail.alias_targets t WHERE t.alias_id = a.id ORDER BY t.address) AS targets
  FROM unnest($1::text[], $2::text[]) AS q(local_part, domain)
  JOIN mail.domains d ON d.name = q.domain
  JOIN LATERAL (
        SELECT al.id, al.local_part
          FROM mail.aliases al
         WHERE al.domain_id = d.id AND (al.local_part = q.local_part OR al.local_part IS NULL)
         ORDER BY al.local_part NULLS LAST
         LIMIT 1) a ON true`;

interface ResolvedTarget {
  targetLocal: string;
  targetDomain: string;
  id: string;
  localPart: string | null;
  targets: string[];
}

function splitAddress(address: string): { localPart: string; domain: string } {
  const at = address.lastIndexOf('@');
  return { localPart: address.slice(0, at), domain: address.slice(at + 1) };
}

export function aliasAddress(node: AliasNode): string {
  return `${node.localPart ?? '*'}@${node.domain}`;
}

/** Serialises alias writes for the rest of the caller's transaction (see ALIAS_GRAPH_LOCK_SQL). */
export async function lockAliasGraph(db: Queryable): Promise<void> {
  await db.query(ALIAS_GRAPH_LOCK_SQL);
}

/**
 * The loop `node` would be part of with `targets`, as the addresses passed through (starting and
 * ending with the alias), or null. Walks breadth-first, one query per level, with a visited set.
 */
export async function findAliasCycle(db: Queryable, node: AliasNode, targets: readonly string[]): Promise<string[] | null> {
  const start = aliasAddress(node);
  // How each target address was reached: address -> the target address whose alias lists it
  // (the alias being written, for its own targets).
  const via = new Map<string, string>();
  const visited = new Set<string>();
  let frontier = [...new Set(targets)];
  for (const target of frontier) via.set(target, start);

  /** start -> ... -> last, then back to start: the loop as the addresses mail would pass. */
  const loopThrough = (last: string): string[] => {
    const path = [last];
    for (let step = via.get(last); step !== undefined && step !== start; step = via.get(step)) path.push(step);
    return [start, ...path.reverse(), ...(last === start ? [] : [start])];
  };

  for (let depth = 0; depth < MAX_DEPTH && frontier.length > 0 && visited.size < MAX_VISITED_ALIASES; depth += 1) {
    const parts = frontier.map((target) => splitAddress(target));
    const result = await db.query<ResolvedTarget>(RESOLVE_TARGETS_SQL, [parts.map((part) => part.localPart), parts.map((part) => part.domain)]);
    const found = new Map(result.rows.map((row) => [`${row.targetLocal}@${row.targetDomain}`, row]));
    const next: string[] = [];
    for (const target of frontier) {
      const { localPart, domain } = splitAddress(target);
      const row = found.get(target);
      // The alias being written wins where the edge would pick it: its exact address, or, as the
      // catch-all, any address of its domain that no exact alias takes.
      const hitsNode =
        domain === node.domain && (node.localPart === null ? row === undefined || row.localPart === null : localPart === node.localPart);
      if (hitsNode) return loopThrough(target);
      if (!row) continue;
      const reached = aliasAddress({ domain, localPart: row.localPart });
      if (reached === start || visited.has(row.id)) continue;
      visited.add(row.id);
      for (const onward of row.targets) {
        if (via.has(onward)) continue;
        via.set(onward, target);
        next.push(onward);
      }
    }
    frontier = next;
  }
  return null;
}

/** Refuses, with the loop spelled out, a write that would put `node` in one. */
export async function refuseAliasCycle(db: Queryable, node: AliasNode, targets: readonly string[]): Promise<void> {
  const cycle = await findAliasCycle(db, node, targets);
  if (cycle) throw new AliasCycleError(aliasAddress(node), cycle);
}
