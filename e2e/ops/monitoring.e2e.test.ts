// What operators run beside Postern is code too. The alert rules: promtool checks their syntax and
// runs their unit tests (dead-runner: an alert nobody trusted was an alert nobody read). The alert
// rules and the Grafana dashboard name only metrics the apps really export — a renamed metric would
// otherwise silence an alert or blank a panel without a sound. compose.yaml's Prometheus
// configuration passes promtool, and its Postern services set only variables Postern knows.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { unknownMailVariables } from '@postern/shared';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, '..', '..');
const rulesDir = path.join(root, 'ops', 'prometheus');

async function promtool(args: string[]): Promise<string> {
  try {
    const { stdout, stderr } = await run('promtool', args, { cwd: rulesDir });
    return stdout + stderr;
  } catch (error) {
    const failure = error as NodeJS.ErrnoException & { stdout?: string; stderr?: string };
    if (failure.code === 'ENOENT') {
      throw new Error('promtool not found: install it (Debian: apt-get install prometheus; CI does this in .ci/run)');
    }
    throw new Error(`promtool ${args.join(' ')} failed:\n${failure.stdout ?? ''}${failure.stderr ?? ''}`);
  }
}

function exportedMetricNames(): Set<string> {
  const names = new Set<string>();
  const files = [
    'packages/shared/src/http/readiness.ts',
    'packages/shared/src/http/ops-server.ts',
    'packages/shared/src/metrics/queue-gauges.ts',
    'apps/core/src/metrics.ts',
    'apps/core/src/relay/relay-gauges.ts',
    'apps/core/src/relay/site-backoff-gauges.ts',
    'apps/core/src/intake/redis-room-gauges.ts',
    'apps/mta/src/metrics.ts',
    'apps/mta/src/cluster/primary.ts',
    'apps/api/src/http/operation-metrics.ts',
  ];
  for (const file of files) {
    const source = readFileSync(path.join(root, file), 'utf8');
    for (const match of source.matchAll(/['"](mail_[a-z0-9_]+)['"]/g)) names.add(match[1] as string);
  }
  return names;
}

/** Metric names in PromQL text, histogram series reduced to the histogram's name; YAML comments
 *  (which may name a family, `mail_attempt_schedule_*`) are not references. */
function referencedMetrics(text: string): Set<string> {
  return new Set([...text.replace(/#.*$/gm, '').matchAll(/\b(mail_[a-z0-9_]+)/g)].map((match) => (match[1] as string).replace(/_(bucket|sum|count)$/, '')));
}

function missingMetrics(text: string): string[] {
  const exported = exportedMetricNames();
  return [...referencedMetrics(text)].filter((name) => !exported.has(name));
}

describe('Prometheus alert rules', () => {
  it('pass promtool check and their unit tests', async () => {
    expect(await promtool(['check', 'rules', 'postern-alerts.yml'])).toMatch(/SUCCESS/);
    expect(await promtool(['test', 'rules', 'postern-alerts.test.yml'])).toMatch(/SUCCESS/);
  });

  it('name only metrics the apps export', () => {
    const rules = readFileSync(path.join(rulesDir, 'postern-alerts.yml'), 'utf8');
    expect(referencedMetrics(rules).size).toBeGreaterThan(5);
    const missing = missingMetrics(rules);
    expect(missing, `alert rules reference metrics no app exports: ${missing.join(', ')}`).toEqual([]);
  });
});

describe('Grafana dashboard', () => {
  const dashboard = JSON.parse(readFileSync(path.join(root, 'ops', 'grafana', 'dashboards', 'postern.json'), 'utf8')) as {
    uid: string;
    panels: Array<{ id: number; type: string; title: string; targets?: Array<{ expr: string; refId: string }> }>;
  };
  const queries = dashboard.panels.flatMap((panel) => panel.targets ?? []).map((target) => target.expr);

  it('queries only metrics the apps export', () => {
    expect(queries.length).toBeGreaterThan(10);
    const missing = missingMetrics(queries.join('\n'));
    expect(missing, `dashboard panels query metrics no app exports: ${missing.join(', ')}`).toEqual([]);
  });

  it('has unique panel ids and the panels operators look for first', () => {
    const ids = dashboard.panels.map((panel) => panel.id);
    expect(new Set(ids).size).toBe(ids.length);
    const titles = dashboard.panels.map((panel) => panel.title.toLowerCase()).join(' | ');
    for (const topic of ['queue depth', 'oldest', 'due lag', 'attempts by outcome', 'dead letters', 'rcpt outcomes', 'lookup latency', 'heartbeat', 'restarts', 'ready']) {
      expect(titles, `a panel about "${topic}"`).toContain(topic);
    }
  });
});

describe('compose.yaml', () => {
  const compose = parseYaml(readFileSync(path.join(root, 'compose.yaml'), 'utf8'), { merge: true }) as {
    services: Record<string, { image?: string; command?: string[]; environment?: Record<string, string>; volumes?: string[] }>;
  };
  const postern = Object.entries(compose.services).filter(([, service]) => service.image?.includes('POSTERN_IMAGE:-postern'));

  it('runs the scale-out topology: two edges, two engines, the API, migrations first', () => {
    const commands = postern.map(([, service]) => service.command?.join(' ')).sort();
    expect(commands).toEqual(['api', 'core', 'core', 'migrate', 'mta', 'mta']);
  });

  it('sets only variables Postern knows', () => {
    for (const [name, service] of postern) {
      expect(unknownMailVariables(service.environment ?? {}), `service ${name}`).toEqual([]);
    }
  });

  it('mounts files that exist, and its Prometheus configuration passes promtool', async () => {
    for (const service of Object.values(compose.services)) {
      for (const volume of service.volumes ?? []) {
        const source = volume.split(':')[0] as string;
        if (source.startsWith('./')) expect(existsSync(path.join(root, source)), volume).toBe(true);
      }
    }
    expect(await promtool(['check', 'config', 'prometheus.compose.yml'])).toMatch(/SUCCESS/);
  });
});
