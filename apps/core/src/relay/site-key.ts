// A destination site (KumoMTA's idea, docs/core.md "Shaping"): the sorted set of MX host names a
// recipient domain resolves to. A thousand domains hosted by one provider publish the same MX
// hosts, so they share one site and one budget of connections and messages; two domains of one
// provider with different MX sets are two sites, as they are two sets of servers to the sender.
// The key is the names, lowercased, without the root dot, deduplicated, sorted and joined by ",".
// Names are DNS text: anything outside a host name's letters is replaced, so the key is always
// storable and printable; a key too long for its column keeps its start and a hash of the whole.
import { createHash } from 'node:crypto';

/** The longest key stored (mail.site_slots.site allows 300). */
export const MAX_SITE_KEY_LENGTH = 255;

/** One MX host name in the form keys and patterns compare: lowercase, no root dot. */
export function canonicalHost(name: string): string {
  return name
    .trim()
    .toLowerCase()
    .replace(/\.$/, '')
    .replace(/[^a-z0-9._*-]/g, '?');
}

/** The site of a domain whose MX records name `hosts` (or of a domain with no MX: [the domain]). */
export function siteKey(hosts: readonly string[]): string {
  const names = [...new Set(hosts.map(canonicalHost).filter((name) => name !== ''))].sort();
  const key = names.join(',');
  if (key.length <= MAX_SITE_KEY_LENGTH) return key;
  const hash = createHash('sha256').update(key).digest('hex').slice(0, 16);
  return `${key.slice(0, MAX_SITE_KEY_LENGTH - 17)}#${hash}`;
}

