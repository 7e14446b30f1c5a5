// The monorepo's architectural rules, checked as part of `npm test`'s lint step (CONTRIBUTING.md):
//   - apps depend on packages/shared, never on each other. npm workspaces link every package into
//     node_modules, so nothing else stops `import ... from '@postern/core'` in the API;
//   - inside the engine, the queue (claims, leases, batching, reclaim) and the delivery policy (one
//     attempt, the ladder, bounces) import nothing from each other, types included: what both need
//     is the delivery lifecycle in packages/shared, and engine.ts wires one to the other. Folders
//     that import each other grow a cycle in which neither can be read, changed or tested alone.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const appsDir = path.join(root, 'apps');
const apps = readdirSync(appsDir).filter((name) => statSync(path.join(appsDir, name)).isDirectory());
const problems: string[] = [];
/** Pairs of folders neither of which may import from the other. */
const separate: Array<[string, string]> = [['apps/core/src/queue', 'apps/core/src/delivery']];

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'node_modules' || entry.name === 'dist' ? [] : sourceFiles(full);
    return /\.[cm]?[jt]s$/.test(entry.name) ? [full] : [];
  });
}

for (const app of apps) {
  const others = apps.filter((name) => name !== app);
  const manifest = JSON.parse(readFileSync(path.join(appsDir, app, 'package.json'), 'utf8')) as Record<string, Record<string, string> | undefined>;
  for (const field of ['dependencies', 'devDependencies', 'peerDependencies']) {
    for (const dependency of Object.keys(manifest[field] ?? {})) {
      if (others.some((other) => dependency === `@postern/${other}`)) {
        problems.push(`apps/${app}/package.json: ${field} names ${dependency}`);
      }
    }
  }
  for (const file of sourceFiles(path.join(appsDir, app))) {
    const text = readFileSync(file, 'utf8');
    for (const match of text.matchAll(/(?:from|import)\s*\(?\s*['"]([^'"]+)['"]/g)) {
      const specifier = match[1] as string;
      const resolved = specifier.startsWith('.') ? path.resolve(path.dirname(file), specifier) : null;
      const crosses = others.some(
        (other) =>
          specifier === `@postern/${other}` ||
          specifier.startsWith(`@postern/${other}/`) ||
          resolved?.startsWith(path.join(appsDir, other) + path.sep) === true,
      );
      if (crosses) problems.push(`${path.relative(root, file)}: imports ${specifier}`);
      for (const pair of separate) {
        const [from, to] = pair.map((dir) => path.join(root, dir) + path.sep) as [string, string];
        for (const [own, other] of [[from, to], [to, from]] as const) {
          if (file.startsWith(own) && resolved?.startsWith(other)) {
            problems.push(`${path.relative(root, file)}: imports ${specifier} (${pair[0]} and ${pair[1]} import nothing from each other)`);
          }
        }
      }
    }
  }
}

if (problems.length > 0) {
  console.error(`apps must depend on packages/shared only, never on each other, and separate folders stay separate:\n  ${problems.join('\n  ')}`);
  process.exitCode = 1;
} else {
  console.log(`boundaries ok: ${apps.length} apps depend on packages/shared only; ${separate.map((pair) => pair.join(' | ')).join(', ')} separate`);
}
