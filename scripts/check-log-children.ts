// Every logger made from another goes through childLogger (packages/shared/src/logging/child-logger.ts),
// checked as part of `npm test`'s lint step: a `.child(` of pino's own writes a key the parent bound
// already a second time in the same line (`"component":"stream",...,"component":"stream-doorbell"`),
// which Elasticsearch refuses and other tools read as the first or the last value.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const helper = path.join(root, 'packages/shared/src/logging/child-logger.ts');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'node_modules' || entry.name === 'dist' ? [] : sourceFiles(full);
    // Tests may make plain children: what they log is never shipped.
    return /\.[cm]?[jt]s$/.test(entry.name) && !/\.(test|testkit)\.[cm]?[jt]s$/.test(entry.name) ? [full] : [];
  });
}

const folders = ['apps', 'packages'].flatMap((top) =>
  readdirSync(path.join(root, top), { withFileTypes: true })
    .filter((entry) => entry.isDirectory())
    .map((entry) => path.join(root, top, entry.name, 'src')),
);
const problems: string[] = [];
for (const file of folders.flatMap((folder) => sourceFiles(folder))) {
  if (file === helper) continue;
  readFileSync(file, 'utf8')
    .split('\n')
    .forEach((line, index) => {
      if (/\.child\s*\(/.test(line)) problems.push(`${path.relative(root, file)}:${index + 1}: ${line.trim()}`);
    });
}

if (problems.length > 0) {
  console.error(`a logger is made from another with childLogger (@postern/shared), never pino's .child(:\n  ${problems.join('\n  ')}`);
  process.exitCode = 1;
} else {
  console.log(`log children ok: every logger made from another goes through childLogger`);
}
