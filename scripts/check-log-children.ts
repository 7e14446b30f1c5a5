// Every logger made from another goes through childLogger (packages/shared/src/logging/child-logger.ts),
// checked as part of `npm test`'s lint step: a `.child(` of pino's own writes a key the parent bound
// already a second time in the same line (`"component":"stream",...,"component":"stream-doorbell"`),
// which Elasticsearch refuses and other tools read as the first or the last value.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { productionSourceFiles } from './production-sources.ts';

const root = path.resolve(import.meta.dirname, '..');
const helper = path.join(root, 'packages/shared/src/logging/child-logger.ts');

// Test helpers (`*.testkit.*`) may make plain children too: what they log is never shipped.
const files = productionSourceFiles(root).filter((file) => file !== helper && !/\.testkit\.[cm]?[jt]s$/.test(file));
const problems: string[] = [];
for (const file of files) {
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
