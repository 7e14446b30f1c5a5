import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadTemplateCatalog } from '../templates/template-catalog.ts';
import type { DeliveryCommand } from './delivery-command.ts';
import { type CommandOrigin, intakeCommand, QuarantineFailed, refuseCommand } from './intake-command.ts';
import { recordingPool } from './recording-pool.testkit.ts';

const catalog = loadTemplateCatalog(path.resolve(import.meta.dirname, '../../../../templates'));
const options = { catalog, sender: 'postern@mail.example' };
const origin: CommandOrigin = { channel: 'api', streamEntryId: null, raw: '{"to":"a@example.com"}' };

const rendered: DeliveryCommand = {
  schemaVersion: '2', source: 'billing', idempotencyKey: 'k', deliveryId: null, recipient: 'a@example.com', category: null,
  payload: { mode: 'rendered', subject: 's', text: 't', html: null }, traceparent: null,
};
const unknownTemplate: DeliveryCommand = { ...rendered, payload: { mode: 'template', templateId: 'no-such-template', locale: null, variables: {} } };

/** A pool that records every statement; `fail` makes the statements it matches throw. */
function fakePool(fail?: { sql: RegExp; error: Error }) {
  return recordingPool({ id: '7', ...(fail ? { fail } : {}) });
}

describe('intakeCommand: check, accept, or quarantine the refusal', () => {
  it('accepts a command without quarantining anything', async () => {
    const { statements, pool } = fakePool();
    expect(await intakeCommand(pool, rendered, origin, options)).toMatchObject({ status: 'created' });
    expect(statements.some(({ sql }) => sql.includes('malformed_commands'))).toBe(false);
  });

  it('quarantines what acceptance refuses, with the channel and the raw text', async () => {
    const { statements, pool } = fakePool();
    const outcome = await intakeCommand(pool, unknownTemplate, origin, options);
    expect(outcome).toMatchObject({ status: 'refused', failure: { code: 'unknown_template', source: 'billing' }, quarantineId: '7' });
    const row = statements.find(({ sql }) => sql.includes('malformed_commands'));
    expect(row?.values.slice(0, 3)).toEqual(['api', null, 'unknown_template']);
    expect(row?.values[7]).toBe(origin.raw);
  });

  it('throws what accepting throws, and a failed quarantine insert as QuarantineFailed', async () => {
    const outage = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    await expect(intakeCommand(fakePool({ sql: /INSERT INTO mail\.deliveries/, error: outage }).pool, rendered, origin, options)).rejects.toBe(outage);
    const refused = intakeCommand(fakePool({ sql: /malformed_commands/, error: outage }).pool, unknownTemplate, origin, options);
    await expect(refused).rejects.toBeInstanceOf(QuarantineFailed);
    await expect(refused).rejects.toMatchObject({ cause: outage, failure: { code: 'unknown_template' } });
  });

  it('refuseCommand records an adapter\'s refusal the same way', async () => {
    const { statements, pool } = fakePool();
    const failure = { code: 'invalid_field' as const, detail: '"to" contains a NUL character', schemaVersion: '2', source: 'billing', deliveryId: null };
    expect(await refuseCommand(pool, failure, origin)).toEqual({ status: 'refused', failure, quarantineId: '7' });
    expect(statements).toHaveLength(1);
  });
});
