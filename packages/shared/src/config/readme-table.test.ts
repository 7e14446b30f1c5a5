// The README's configuration table is the operator's reference: every variable Postern reads must
// be in it, and it must not document variables that no longer exist.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { envSchema } from './env-schema.ts';

const readme = readFileSync(path.resolve(import.meta.dirname, '../../../../README.md'), 'utf8');
const section = readme.slice(readme.indexOf('## Configuration'), readme.indexOf('\n## ', readme.indexOf('## Configuration') + 5));
const documented = new Set([...section.matchAll(/^\|\s*(`MAIL_[A-Z0-9_]+`(?:,\s*`MAIL_[A-Z0-9_]+`)*)/gm)].flatMap((row) =>
  [...(row[1] as string).matchAll(/`(MAIL_[A-Z0-9_]+)`/g)].map((name) => name[1] as string),
));

describe("README's configuration table", () => {
  it('lists every variable the config loader reads, and no other', () => {
    const read = Object.keys(envSchema.shape).sort();
    expect([...documented].sort()).toEqual(read);
  });
});
