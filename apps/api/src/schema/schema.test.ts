import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { printedSchema, schema } from './index.ts';

const committedFile = path.resolve(import.meta.dirname, '..', '..', 'schema.graphql');

describe('the printed schema', () => {
  it('is committed as apps/api/schema.graphql, up to date (else: npm run schema:print -w @postern/api)', () => {
    expect(readFileSync(committedFile, 'utf8')).toBe(printedSchema());
  });

  it('puts every mutation behind a scope and returns typed input errors from those that take input', () => {
    const mutations = schema.getMutationType()?.getFields() ?? {};
    for (const name of ['createDomain', 'createAlias', 'updateAlias', 'deleteAlias', 'sendEmail', 'requeueDeadLetter', 'cancelDelivery', 'addSuppression', 'removeSuppression']) {
      expect(mutations[name], name).toBeDefined();
      expect(String(mutations[name]?.type)).toMatch(/Result!$/);
    }
  });
});
