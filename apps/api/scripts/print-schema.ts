// Writes apps/api/schema.graphql, the committed printed schema. src/schema/schema.test.ts fails
// when the committed file differs from what the code builds (run `npm run schema:print -w @postern/api`).
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { printedSchema } from '../src/schema/index.ts';

const target = path.resolve(import.meta.dirname, '..', 'schema.graphql');
writeFileSync(target, printedSchema());
process.stdout.write(`wrote ${path.relative(process.cwd(), target)}\n`);
