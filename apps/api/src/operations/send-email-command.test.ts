import { commandHash, decodeCommand } from '@postern/shared';
import { describe, expect, it } from 'vitest';
import { type SendEmailRequest, sendEmailCommand } from './send-email-command.ts';
import { requestText } from './send-email-intake.ts';

const login: SendEmailRequest = {
  source: 'billing',
  to: 'Ann@Customer.TEST',
  idempotencyKey: 'login-7f3a',
  template: { id: 'login-code', locale: 'de-AT', variables: { code: '493817', expiresInMinutes: 10 } },
};
const receipt: SendEmailRequest = { source: 'billing', to: 'ann@customer.test', idempotencyKey: 'receipt-1234', rendered: { subject: 'Your receipt', text: 'Thanks!' } };

const typed = (request: SendEmailRequest) => sendEmailCommand(request, JSON.stringify(request));

describe('sendEmailCommand: sendEmail input as a typed command', () => {
  it('is the command the same v2 stream command decodes to, with the same content hash', () => {
    const fromApi = typed({ ...login, deliveryId: '6D1F7A52-4D0E-4B8E-9F3C-2A1B0C9D8E7F', category: 'auth' });
    const fromStream = decodeCommand({
      schema_version: '2',
      command: JSON.stringify({
        source: 'billing', idempotencyKey: 'login-7f3a', to: 'Ann@Customer.TEST', deliveryId: '6D1F7A52-4D0E-4B8E-9F3C-2A1B0C9D8E7F', category: 'auth',
        payload: { mode: 'template', templateId: 'login-code', locale: 'de-AT', variables: { code: '493817', expiresInMinutes: 10 } },
      }),
    });
    if (!fromApi.ok || !fromStream.ok) throw new Error('expected both to be accepted');
    expect(fromApi.command).toEqual(fromStream.command);
    expect(commandHash(fromApi.command)).toBe(commandHash(fromStream.command));
    expect(fromApi.command).toMatchObject({ recipient: 'ann@customer.test', deliveryId: '6d1f7a52-4d0e-4b8e-9f3c-2a1b0c9d8e7f' });
    expect(typed(receipt)).toMatchObject({ ok: true, command: { payload: { mode: 'rendered', subject: 'Your receipt', text: 'Thanks!', html: null } } });
  });

  it.each([
    ['a bad address', { ...receipt, to: 'not an address' }, 'invalid_address', 'to'],
    ['an empty idempotency key', { ...receipt, idempotencyKey: '' }, 'missing_field', 'idempotencyKey'],
    ['a delivery id that is no UUID', { ...receipt, deliveryId: 'nope' }, 'invalid_field', 'deliveryId'],
    ['a bad category', { ...receipt, category: 'Not Valid' }, 'invalid_field', 'category'],
    ['the edge as source', { ...receipt, source: 'smtp' }, 'invalid_field', 'source'],
    ['a bad template id', { ...login, template: { ...login.template, id: 'Login Code' } }, 'invalid_field', 'template.id'],
    ['a bad locale', { ...login, template: { ...login.template, locale: 'deutsch!' } }, 'invalid_field', 'template.locale'],
    ['variables that are a list', { ...login, template: { ...login.template, variables: [1] } }, 'invalid_field', 'template.variables'],
    ['a NUL deep in the variables', { ...login, template: { ...login.template, variables: { a: [{ b: 'x\u0000' }] } } }, 'invalid_field', 'template.variables'],
    ['a lone surrogate in the subject', { ...receipt, rendered: { subject: 'a\ud800' , text: 't' } }, 'invalid_field', 'rendered.subject'],
    ['no body', { ...receipt, rendered: { subject: 's' } }, 'missing_field', 'rendered.text'],
    ['a blank html and no text', { ...receipt, rendered: { subject: 's', text: null, html: '' } }, 'missing_field', 'rendered.text'],
  ] as Array<[string, SendEmailRequest, string, string]>)('refuses %s as %s, at %s', (_name, request, code, field) => {
    const result = typed(request);
    expect(result).toMatchObject({ ok: false, failure: { code, schemaVersion: '2', source: request.source }, field });
  });

  it('names the input path in the detail', () => {
    expect(typed({ ...login, template: { ...login.template, variables: { a: [{ b: 'x\u0000' }] } } })).toMatchObject({
      failure: { detail: '"template.variables.a.0.b" contains a NUL character' },
    });
    expect(typed({ ...receipt, rendered: { subject: 's' } })).toMatchObject({ failure: { detail: 'a rendered payload needs "rendered.text" or "rendered.html"' } });
  });

  it('refuses a request larger than a command may be as too_large, about the whole input', () => {
    const huge = { ...receipt, rendered: { subject: 's', text: 'x'.repeat(200_000), html: 'y'.repeat(100_000) } };
    expect(typed(huge)).toMatchObject({ ok: false, failure: { code: 'too_large' }, field: 'input' });
  });

  it('keeps a number JSON cannot hold as the null it is stored as', () => {
    const result = typed({ ...login, template: { ...login.template, variables: { code: '1', expiresInMinutes: Number.POSITIVE_INFINITY } } });
    expect(result).toMatchObject({ ok: true, command: { payload: { variables: { code: '1', expiresInMinutes: null } } } });
  });

  it('refuses variables nested too deeply, and its text for the quarantine does not overflow the stack', () => {
    let deep: unknown = 1;
    for (let level = 0; level < 20_000; level++) deep = { a: deep };
    const request = { ...login, template: { ...login.template, variables: { code: '1', expiresInMinutes: 10, deep } } };
    expect(() => JSON.stringify(request)).toThrow(RangeError);
    const text = requestText(request);
    expect(text).toContain('nested deeper than');
    expect(sendEmailCommand(request, text)).toMatchObject({ ok: false, failure: { code: 'invalid_field' }, field: 'template.variables' });
    // Within the limit, the text is the request's JSON, unchanged.
    expect(requestText(login)).toBe(JSON.stringify(login));
  });
});
