import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { MAX_SITE_KEY_LENGTH, siteKey } from './site-key.ts';
import { hostMatches, limitsFor, loadSiteRules, parseSiteRules, SITES_FILE } from './site-rules.ts';

const DEFAULTS = { maxConnections: 10, messagesPerConnection: 100, ratePerSecond: null };

describe('siteKey', () => {
  it('is the MX host names lowercased, without the root dot, deduplicated and sorted: one key for every domain of a provider', () => {
    expect(siteKey(['ALT1.aspmx.l.google.com.', 'aspmx.l.google.com', 'alt1.aspmx.l.google.com'])).toBe('alt1.aspmx.l.google.com,aspmx.l.google.com');
    expect(siteKey(['b.example', 'a.example'])).toBe(siteKey(['a.example', 'B.EXAMPLE.']));
  });

  it('keeps hostile names printable and storable, and a key too long for its column its start and a hash', () => {
    expect(siteKey(['mx\u0000.evil\n.test', 'ünï.test'])).toBe('?n?.test,mx?.evil?.test');
    const many = Array.from({ length: 40 }, (_, i) => `mx${i}.a-rather-long-provider-name.example`);
    const key = siteKey(many);
    expect(key.length).toBe(MAX_SITE_KEY_LENGTH);
    expect(key).toMatch(/#[0-9a-f]{16}$/);
    expect(siteKey([...many].reverse())).toBe(key);
    expect(siteKey([...many.slice(1), 'other.example'])).not.toBe(key);
  });
});

describe('the sites file', () => {
  it('parses the file shipped with the engine', () => {
    const rules = loadSiteRules(null);
    expect(rules.length).toBeGreaterThan(0);
    expect(readFileSync(SITES_FILE, 'utf8')).toContain('*.google.com');
  });

  it('reads connections, messages and rate per pattern; the first rule any MX host matches wins, the rest are defaults', () => {
    const rules = parseSiteRules(['# comment', '', '*.google.com  connections=20 messages=50 rate=600/m', 'mx.exact.test messages=5', '*.exact.test connections=3'].join('\n'));
    expect(limitsFor(rules, DEFAULTS, ['aspmx.l.google.com', 'alt1.aspmx.l.google.com'])).toMatchObject({ maxConnections: 20, messagesPerConnection: 50, ratePerSecond: 10 });
    expect(limitsFor(rules, DEFAULTS, ['MX.exact.test.'])).toMatchObject({ maxConnections: 10, messagesPerConnection: 5, ratePerSecond: null, rule: { line: 4 } });
    expect(limitsFor(rules, DEFAULTS, ['other.exact.test'])).toMatchObject({ maxConnections: 3, messagesPerConnection: 100, rule: { line: 5 } });
    expect(limitsFor(rules, DEFAULTS, ['mx.elsewhere.example'])).toEqual({ ...DEFAULTS, rule: null });
    expect(hostMatches('*.google.com', 'google.com')).toBe(false);
    expect(hostMatches('*.google.com', 'evilgoogle.com')).toBe(false);
  });

  it.each([
    ['google.com connections=0', /sites\.txt:2: connections=0: expected a whole number in 1\.\.1000/],
    ['*.google.com', /sites\.txt:2: a rule needs at least one of/],
    ['*.google.com connections=5 connections=6', /sites\.txt:2: connections= is given twice/],
    ['*.google.com burst=5', /sites\.txt:2: unknown setting "burst"/],
    ['*.google.com rate=5', /sites\.txt:2: rate=5: "5" is not a rate/],
    ['*.google.com messages', /sites\.txt:2: expected key=value/],
    ['google..com messages=1', /sites\.txt:2: "google\.\.com" is not a host name/],
    ['*google.com messages=1', /sites\.txt:2: "\*google\.com" is not a host name/],
  ])('refuses %s, naming the line', (line, problem) => {
    expect(() => parseSiteRules(`# first line\n${line}\n`, 'sites.txt')).toThrow(problem);
  });
});
