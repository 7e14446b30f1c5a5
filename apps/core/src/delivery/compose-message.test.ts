import { fileURLToPath } from 'node:url';
import { type ClaimedDelivery, createLogger, loadTemplateCatalog, type TemplateCatalog } from '@postern/shared';
import { describe, expect, it } from 'vitest';
import { buildMessage, type ComposeContext, UnbuildableDelivery } from './compose-message.ts';

const context: ComposeContext = {
  catalog: { templates: new Map() } as unknown as TemplateCatalog,
  sender: 'postern@sender.example',
  logger: createLogger('compose-message-test', 'silent'),
  loadPayload: async () => null,
};

function rendered(id: string): ClaimedDelivery {
  return {
    id,
    source: 'api',
    payload_mode: 'rendered',
    message_id: null,
    subject: 'Your receipt',
    text_body: 'Thank you.',
    html_body: '<p>Thank you.</p>',
    recipient: 'customer@example.test',
    envelope_from: '',
    rfc_message_id: `<${id}@sender.example>`,
    attempt_count: 1,
    created_at: new Date('2026-11-27T10:00:00Z'),
  } as ClaimedDelivery;
}

describe('buildMessage, composed mail', () => {
  it('sends the same bytes on every attempt: boundaries made from the delivery, not drawn at random', async () => {
    const id = '0b6f3c2e-5d4a-4f1e-9a7b-2c8d1e0f3a4b';
    const boundaryOf = (raw: Buffer) => /boundary="([^"]+)"/.exec(raw.toString())?.[1];
    const first = await buildMessage(context, rendered(id));
    const retry = await buildMessage(context, rendered(id));
    expect(first.raw.toString()).toContain('multipart/alternative');
    expect(retry.raw.equals(first.raw)).toBe(true);
    // Another delivery, or other content, other boundaries.
    const other = await buildMessage(context, rendered('7e1d2c3b-4a59-4687-b9a0-c1d2e3f4a5b6'));
    const edited = await buildMessage(context, { ...rendered(id), text_body: 'Thank you!' });
    expect(new Set([first, other, edited].map((built) => boundaryOf(built.raw))).size).toBe(3);
  });

  it('keeps a body that holds the boundary lines the delivery id alone would give inside its own part', async () => {
    // A producer may choose the delivery id (deliveryId), and the body may carry text its users
    // wrote: a boundary made from the id alone was known to whoever knew the id, and a line of it
    // in a template variable started a part of its own (an HTML part the producer never wrote).
    const id = '0b6f3c2e-5d4a-4f1e-9a7b-2c8d1e0f3a4b';
    const guessed = `----_NmP-${id.replaceAll('-', '')}-Part_1`;
    const text = `Thank you.\r\n${guessed}\r\nContent-Type: text/html\r\n\r\n<a href="https://evil.example">pay here</a>\r\n${guessed}--\r\n`;
    const built = await buildMessage(context, { ...rendered(id), text_body: text });
    const raw = built.raw.toString('latin1');
    const [boundary, ...others] = [...raw.matchAll(/boundary="([^"]+)"/g)].map((match) => match[1] as string);
    expect(boundary).toBeDefined();
    expect(others).toEqual([]);
    // The text is sent as written (7bit), and no line of it is a delimiter of the message's own
    // boundary: two parts, text and HTML, as composed.
    expect(raw).toContain(text);
    expect(text).not.toContain(boundary);
    expect(raw.split('\r\n').filter((line) => line === `--${boundary}`)).toHaveLength(2);
  });

  it('keeps every header line within 998 octets (RFC 5322 2.1.1), even for a subject that is one long word', async () => {
    for (const subject of ['x'.repeat(998), `Receipt ${'y'.repeat(3000)} ok`]) {
      const built = await buildMessage(context, { ...rendered('0b6f3c2e-5d4a-4f1e-9a7b-2c8d1e0f3a4b'), subject });
      const head = built.raw.toString('latin1').split('\r\n\r\n')[0]!;
      expect(Math.max(...head.split('\r\n').map((line) => line.length))).toBeLessThanOrEqual(998);
      // The subject is still what was asked for once decoded (RFC 2047, as a receiver reads it).
      const unfolded = /^Subject: ?(.*)$/im.exec(head.replace(/\r\n[ \t]+/g, ' '))![1]!;
      const decoded = unfolded.includes('=?') ? unfolded.replace(/=\?UTF-8\?Q\?([^?]*)\?=\s*/gi, (_, q: string) => q.replace(/_/g, ' ').replace(/=([0-9A-F]{2})/g, (__, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)))) : unfolded;
      expect(decoded).toBe(subject);
    }
  });
});

describe('buildMessage, template mail', () => {
  it('variables the template cannot render (accepted under another catalog) make the delivery unbuildable, not a worker failure', async () => {
    const catalog = loadTemplateCatalog(fileURLToPath(new URL('../../../../templates', import.meta.url)));
    const locale = catalog.templates.get('login-code')!.locales.get('en')!;
    const delivery = {
      ...rendered('0b6f3c2e-5d4a-4f1e-9a7b-2c8d1e0f3a4b'),
      payload_mode: 'template',
      template_id: 'login-code',
      template_locale: 'en',
      template_hash: locale.hash,
      template_variables: { code: { toString: 1 }, expiresInMinutes: 5 },
    } as ClaimedDelivery;
    const built = buildMessage({ ...context, catalog }, delivery);
    await expect(built).rejects.toThrow(UnbuildableDelivery);
    await expect(built).rejects.toThrow(/cannot be rendered by the template \(locale en\): Cannot convert object to primitive value/);
  });
});
