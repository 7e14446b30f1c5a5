// The one normal form of what an alias is made of, shared by the code that writes aliases and the
// code that reads them on every RCPT (stale-alias-table: an address must mean the same thing on every path).
// Everything here is pure: no database, so it is unit-tested on its own.
import { InvalidAddressError, normalizeAddress, normalizeDomain, normalizeLocalPart } from '../addresses/normalize-address.ts';
import { textProblem } from '../text/storable-text.ts';
import { AliasInputError } from './errors.ts';

/** forward: relay to its target(s); list: fan out to every member. Both expand to their targets. */
export const ALIAS_KINDS = ['forward', 'list'] as const;
export type AliasKind = (typeof ALIAS_KINDS)[number];

export function isAliasKind(value: string): value is AliasKind {
  return (ALIAS_KINDS as readonly string[]).includes(value);
}

function wrap<T>(what: string, work: () => T): T {
  try {
    return work();
  } catch (error) {
    if (error instanceof InvalidAddressError) throw new AliasInputError(`${what}: ${error.message}`, { cause: error });
    throw error;
  }
}

export function aliasDomain(domain: string): string {
  return wrap('domain', () => normalizeDomain(domain));
}

/** null is the domain's catch-all; a local part is stored lower-cased, as lookups compare it. */
export function aliasLocalPart(localPart: string | null): string | null {
  if (localPart === null) return null;
  return wrap('local part', () => normalizeLocalPart(localPart));
}

/** Targets of one alias, repeated ones counted: a list for a team, not a mailing list. Unbounded,
 *  50,000 targets in a 1 MiB API request held the event loop 1.9 s while they were parsed, and one
 *  message to the alias became 50,000 deliveries (each RCPT fans out to every target). */
export const MAX_ALIAS_TARGETS = 1000;

/** Normalised, de-duplicated, in the order given; at least one, at most MAX_ALIAS_TARGETS given. */
export function aliasTargets(targets: readonly string[]): string[] {
  if (targets.length === 0) throw new AliasInputError('an alias needs at least one target address');
  // Counted before any is parsed: the parsing is the cost.
  if (targets.length > MAX_ALIAS_TARGETS) throw new AliasInputError(`targets: at most ${MAX_ALIAS_TARGETS} per alias, got ${targets.length}`);
  const seen = new Set<string>();
  for (const target of targets) {
    seen.add(wrap('target', () => normalizeAddress(target).address));
  }
  return [...seen];
}

export function aliasKind(kind: string): AliasKind {
  if (!isAliasKind(kind)) throw new AliasInputError(`kind must be one of ${ALIAS_KINDS.join(', ')}, got "${kind}"`);
  return kind;
}

/** A note for operators: refused, not altered, if it holds a NUL, a control character or a lone
 *  surrogate (PostgreSQL refused the NUL inside the statement: INTERNAL_SERVER_ERROR). */
export const MAX_DESCRIPTION_CHARS = 1000;

export function aliasDescription(description: string | null | undefined): string | null {
  if (description === null || description === undefined) return null;
  const problem = textProblem(description, MAX_DESCRIPTION_CHARS);
  if (problem) throw new AliasInputError(`description: ${problem}`);
  return description;
}
