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

/** Normalised, de-duplicated, in the order given; at least one. */
export function aliasTargets(targets: readonly string[]): string[] {
  if (targets.length === 0) throw new AliasInputError('an alias needs at least one target address');
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
