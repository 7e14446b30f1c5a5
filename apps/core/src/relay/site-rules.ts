// Limits per provider as data (docs/core.md, "Shaping"): the sites file maps MX host patterns to
// the limits of the sites they match, as ZoneMTA's bounce list and KumoMTA's shaping file do.
// One rule per line, `pattern key=value ...`:
//   *.google.com   connections=20 messages=50 rate=300/m
// A pattern is a host name (matches it exactly) or `*.` and a domain (matches every name under
// it). A site matches a rule when any of its MX hosts does; the first matching line wins. A rule
// sets any of connections (1..1000), messages (per connection, 1..100000) and rate (N/s, N/m,
// N/h); what it leaves out is the MAIL_SHAPING_* default. `#` starts a comment line.
// The file is read once at start; a line that does not parse refuses the start, naming the line.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseRate } from '@postern/shared';
import { canonicalHost } from './site-key.ts';

export const SITES_FILE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'site-shaping.txt');

export interface SiteLimits {
  maxConnections: number;
  messagesPerConnection: number;
  /** Messages per second; null: no limit. */
  ratePerSecond: number | null;
}

export interface SiteRule {
  pattern: string;
  line: number;
  limits: Partial<SiteLimits>;
}

const PATTERN = /^(\*\.)?([a-z0-9]([a-z0-9-]*[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$/;

function count(text: string, max: number): number | null {
  if (!/^\d+$/.test(text)) return null;
  const value = Number(text);
  return value >= 1 && value <= max ? value : null;
}

export function parseSiteRules(text: string, file = 'site-shaping.txt'): SiteRule[] {
  const rules: SiteRule[] = [];
  text.split('\n').forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const where = `${file}:${index + 1}`;
    const [pattern = '', ...options] = line.split(/\s+/);
    if (!PATTERN.test(pattern)) throw new Error(`${where}: "${pattern}" is not a host name or *.domain pattern`);
    if (options.length === 0) throw new Error(`${where}: a rule needs at least one of connections=, messages=, rate=`);
    const limits: Partial<SiteLimits> = {};
    for (const option of options) {
      const [key, value = ''] = option.split('=', 2) as [string, string?];
      if (!option.includes('=')) throw new Error(`${where}: expected key=value, got "${option}"`);
      if (key === 'connections' && limits.maxConnections === undefined) {
        const parsed = count(value, 1000);
        if (parsed === null) throw new Error(`${where}: connections=${value}: expected a whole number in 1..1000`);
        limits.maxConnections = parsed;
      } else if (key === 'messages' && limits.messagesPerConnection === undefined) {
        const parsed = count(value, 100_000);
        if (parsed === null) throw new Error(`${where}: messages=${value}: expected a whole number in 1..100000`);
        limits.messagesPerConnection = parsed;
      } else if (key === 'rate' && limits.ratePerSecond === undefined) {
        const parsed = parseRate(value);
        if (!parsed.ok) throw new Error(`${where}: rate=${value}: ${parsed.problem}`);
        limits.ratePerSecond = parsed.value;
      } else if (['connections', 'messages', 'rate'].includes(key)) {
        throw new Error(`${where}: ${key}= is given twice`);
      } else {
        throw new Error(`${where}: unknown setting "${key}" (connections, messages, rate)`);
      }
    }
    rules.push({ pattern, line: index + 1, limits });
  });
  return rules;
}

export function loadSiteRules(file: string | null): SiteRule[] {
  const where = file ?? SITES_FILE;
  return parseSiteRules(readFileSync(where, 'utf8'), where);
}

export function hostMatches(pattern: string, host: string): boolean {
  const name = canonicalHost(host);
  return pattern.startsWith('*.') ? name.endsWith(pattern.slice(1)) : name === pattern;
}

/** The limits of a site whose MX hosts are `hosts`: its first matching rule over the defaults. */
export function limitsFor(rules: readonly SiteRule[], defaults: SiteLimits, hosts: readonly string[]): SiteLimits & { rule: SiteRule | null } {
  const rule = rules.find((candidate) => hosts.some((host) => hostMatches(candidate.pattern, host))) ?? null;
  return { ...defaults, ...(rule?.limits ?? {}), rule };
}
