// The alert rules are code: promtool checks their syntax and runs their unit tests (dead-runner: an
// alert nobody trusted was an alert nobody read), and every metric they name must be one the apps
// really export — a renamed metric would otherwise silence its alert without a sound.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

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
    'apps/core/src/metrics.ts',
    'apps/mta/src/metrics.ts',
    'apps/api/src/http/operation-metrics.ts',
  ];
  for (const file of files) {
    const source = readFileSync(path.join(root, file), 'utf8');
    for (const match of source.matchAll(/['"](mail_[a-z0-9_]+)['"]/g)) names.add(match[1] as string);
  }
  return names;
}

describe('Prometheus alert rules', () => {
  it('pass promtool check and their unit tests', async () => {
    expect(await promtool(['check', 'rules', 'postern-alerts.yml'])).toMatch(/SUCCESS/);
    expect(await promtool(['test', 'rules', 'postern-alerts.test.yml'])).toMatch(/SUCCESS/);
  });

  it('name only metrics the apps export', () => {
    const rules = readFileSync(path.join(rulesDir, 'postern-alerts.yml'), 'utf8');
    const referenced = new Set([...rules.matchAll(/\b(mail_[a-z0-9_]+)/g)].map((match) => match[1] as string));
    expect(referenced.size).toBeGreaterThan(5);
    const exported = exportedMetricNames();
    const missing = [...referenced].filter((name) => !exported.has(name));
    expect(missing, `alert rules reference metrics no app exports: ${missing.join(', ')}`).toEqual([]);
  });
});
