import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { durationMs, shortenDuration, shortenExpr, shortenRules } from './shorten-rules.ts';

const shipped = readFileSync(path.join(import.meta.dirname, '..', '..', 'ops', 'prometheus', 'postern-alerts.yml'), 'utf8');

describe('shortened alert rules', () => {
  it('reads Prometheus durations, and refuses what is not one', () => {
    expect(durationMs('1h30m')).toBe(5_400_000);
    expect(durationMs('250ms')).toBe(250);
    expect(durationMs('2d')).toBe(172_800_000);
    expect(() => durationMs('10')).toThrow(/not a Prometheus duration/);
  });

  it('divides durations by the factor, never below the floor', () => {
    expect(shortenDuration('15m', { factor: 60 })).toBe('15s');
    expect(shortenDuration('90s', { factor: 60 })).toBe('1500ms');
    expect(shortenDuration('30s', { factor: 60 })).toBe('1s');
    expect(shortenDuration('30s', { factor: 60, floorMs: 5_000 })).toBe('5s');
  });

  it('shortens range and subquery windows and nothing else of an expression', () => {
    expect(shortenExpr('sum(rate(x{code="451"}[5m])) / clamp_min(sum(rate(x[5m])), 1e-9) > 0.1', { factor: 60 })).toBe(
      'sum(rate(x{code="451"}[5s])) / clamp_min(sum(rate(x[5s])), 1e-9) > 0.1',
    );
    expect(shortenExpr('max_over_time(deriv(y[30m])[1h:1m]) > 120000', { factor: 60 })).toBe('max_over_time(deriv(y[30s])[60s:1s]) > 120000');
    expect(shortenExpr('max_over_time(y[1h:])', { factor: 60 })).toBe('max_over_time(y[60s:])');
  });

  it('keeps every shipped rule, its labels, annotations and thresholds; only durations change', () => {
    type Rule = { alert: string; expr: string; for?: string; labels: unknown; annotations: unknown };
    const rules = (text: string) => (parse(text) as { groups: Array<{ rules: Rule[] }> }).groups.flatMap((group) => group.rules);
    const before = rules(shipped);
    const after = rules(shortenRules(shipped, { factor: 60 }));
    expect(after.map((rule) => rule.alert)).toEqual(before.map((rule) => rule.alert));
    after.forEach((rule, index) => {
      const original = before[index] as Rule;
      expect(rule.labels).toEqual(original.labels);
      expect(rule.annotations).toEqual(original.annotations);
      expect(rule.expr.replace(/\[[^\]]*\]/g, '[]')).toBe(original.expr.replace(/\[[^\]]*\]/g, '[]'));
      if (original.for) expect(durationMs(rule.for as string)).toBe(Math.max(1_000, durationMs(original.for) / 60));
      else expect(rule.for).toBeUndefined();
    });
    expect(after.find((rule) => rule.alert === 'PosternLoopHeartbeatStale')?.expr).toContain('> 120000');
  });
});
