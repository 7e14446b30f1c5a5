import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { checkTemplateCommand, renderLocale, resolveLocale, TemplateRenderError } from './render-template.ts';
import { loadTemplateCatalog, TemplateCatalogError } from './template-catalog.ts';

const shipped = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../templates');
const scratch: string[] = [];

function catalogDir(files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'postern-templates-'));
  scratch.push(dir);
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    writeFileSync(path.join(dir, name), content);
  }
  return dir;
}

afterEach(() => {
  for (const dir of scratch.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('the shipped catalog (templates/)', () => {
  const catalog = loadTemplateCatalog(shipped);

  it('has the login code, password reset, notification digest and bounce templates', () => {
    expect([...catalog.templates.keys()]).toEqual(['delivery-status-notification', 'login-code', 'notification-digest', 'password-reset']);
  });

  it('renders a login code in German, escaping HTML but not text', () => {
    const lookup = checkTemplateCommand(catalog, 'login-code', 'de-AT', { code: '<123>', expiresInMinutes: 10 });
    if (!lookup.ok) throw new Error(lookup.detail);
    expect(lookup.locale.locale).toBe('de');
    const content = renderLocale(lookup.locale, { code: '<123>', expiresInMinutes: 10 });
    expect(content.subject).toBe('Ihr Anmeldecode: <123>');
    expect(content.text).toContain('Ihr Anmeldecode lautet <123>.');
    expect(content.html).toContain('&lt;123&gt;');
  });

  it('falls back from an unknown locale to the default locale', () => {
    const template = catalog.templates.get('login-code');
    if (!template) throw new Error('missing');
    expect(resolveLocale(template, 'fr-CA').locale).toBe('en');
    expect(resolveLocale(template, null).locale).toBe('en');
  });

  it('refuses a command missing a required variable, naming it', () => {
    expect(checkTemplateCommand(catalog, 'password-reset', 'en', { name: 'A', expiresInMinutes: 5 })).toEqual({
      ok: false,
      reason: 'missing_variable',
      detail: 'template "password-reset" requires "resetUrl"',
    });
    expect(checkTemplateCommand(catalog, 'no-such-thing', 'en', {})).toMatchObject({ ok: false, reason: 'unknown_template' });
  });

  it('renders the digest list', () => {
    const template = catalog.templates.get('notification-digest');
    if (!template) throw new Error('missing');
    const content = renderLocale(resolveLocale(template, 'en'), {
      name: 'Bo',
      items: [{ title: 'One', url: 'https://x.test/1' }, { title: 'Two', url: 'https://x.test/2' }],
      unsubscribeUrl: 'https://x.test/u',
    });
    expect(content.subject).toBe('2 new notification(s)');
    expect(content.text).toContain('- Two\n  https://x.test/2');
  });

  it('refuses variables the template cannot render (an object whose own "toString" is not a function), naming the template', () => {
    // JSON can write such an object; Handlebars' '' + value threw a TypeError at every attempt.
    const hostile = [
      { code: { toString: 1 }, expiresInMinutes: 10 },
      { code: '1', expiresInMinutes: { toString: 'x', valueOf: 'y' } },
      { name: 'n', items: { length: { toString: null } }, unsubscribeUrl: 'u' },
      { name: 'n', items: [{ title: { toString: [] }, url: 'u' }], unsubscribeUrl: 'u' },
    ];
    for (const [index, variables] of hostile.entries()) {
      const template = index < 2 ? 'login-code' : 'notification-digest';
      const lookup = checkTemplateCommand(catalog, template, null, variables);
      expect(lookup, JSON.stringify(variables)).toMatchObject({ ok: false, reason: 'invalid_field' });
      if (!lookup.ok) expect(lookup.detail).toMatch(new RegExp(`^"variables" of template "${template}": the variables cannot be rendered`));
    }
    // Names JSON gives no meaning to render like any other field, or as plain objects do.
    const variables = JSON.parse(
      '{"name":{"constructor":1,"__proto__":{"x":1}},"items":[{"__proto__":{"y":1},"title":"t","url":"https://x.test/1"}],"unsubscribeUrl":"https://x.test/<u>"}',
    );
    const harmless = checkTemplateCommand(catalog, 'notification-digest', null, variables);
    if (!harmless.ok) throw new Error(harmless.detail);
    const content = renderLocale(harmless.locale, variables);
    expect(content.subject).toBe('1 new notification(s)');
    expect(content.html).toContain('Hello [object Object]');
    expect(content.html).toContain('href="https://x.test/&lt;u&gt;"');
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });

  it("refuses a link's address that is not an absolute http, https or mailto URL, in a list or not, naming why", () => {
    const digest = (unsubscribeUrl: unknown, url: unknown = 'https://x.test/1') =>
      checkTemplateCommand(catalog, 'notification-digest', null, { name: 'n', items: [{ title: 't', url }], unsubscribeUrl });
    const good = 'https://x.test/1';
    const refusals: Array<[unknown, unknown, RegExp]> = [
      ['javascript:alert(1)', good, /this one is a "javascript:" URL/],
      [' JavaScript:alert(1)', good, /a "javascript:" URL/],
      ['data:text/html,<script>x</script>', good, /a "data:" URL/],
      ['/unsubscribe', good, /a relative or malformed address/],
      [42, good, /a number/],
      [good, 'vbscript:x', /a "vbscript:" URL/],
      [good, null, /this one is none/],
    ];
    for (const [unsubscribeUrl, url, why] of refusals) {
      const lookup = digest(unsubscribeUrl, url);
      expect(lookup, String(unsubscribeUrl)).toMatchObject({ ok: false, reason: 'invalid_field' });
      if (!lookup.ok) expect(lookup.detail).toMatch(why);
    }
    for (const address of ['https://x.test/u?a=1&b=2', 'http://x.test', 'mailto:unsubscribe@x.test']) {
      expect(digest(address), address).toMatchObject({ ok: true });
    }
    const reset = checkTemplateCommand(catalog, 'password-reset', null, { name: 'n', resetUrl: 'javascript:steal()', expiresInMinutes: 5 });
    expect(reset).toMatchObject({ ok: false, reason: 'invalid_field' });
  });

  it('a render that fails anyway is a TemplateRenderError, not a bare TypeError', () => {
    const locale = resolveLocale(catalog.templates.get('login-code')!, 'en');
    expect(() => renderLocale(locale, { code: { toString: 1 }, expiresInMinutes: 1 })).toThrow(TemplateRenderError);
  });

  it('gives each locale a stable content hash', () => {
    const again = loadTemplateCatalog(shipped);
    const hashOf = (c: typeof catalog) => c.templates.get('login-code')?.locales.get('en')?.hash;
    expect(hashOf(again)).toBe(hashOf(catalog));
    expect(hashOf(catalog)).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(catalog.templates.get('login-code')?.locales.get('de')?.hash).not.toBe(hashOf(catalog));
  });
});

describe('a broken catalog stops startup and names the file', () => {
  const manifest = JSON.stringify({ defaultLocale: 'en', variables: ['name'] });

  it('a syntax error', () => {
    const dir = catalogDir({ 'greet/template.json': manifest, 'greet/en/subject.hbs': 'Hi {{name', 'greet/en/text.hbs': 'x' });
    expect(() => loadTemplateCatalog(dir)).toThrow(TemplateCatalogError);
    expect(() => loadTemplateCatalog(dir)).toThrow(/greet\/en\/subject\.hbs: does not parse/);
  });

  it('an undeclared variable', () => {
    const dir = catalogDir({ 'greet/template.json': manifest, 'greet/en/subject.hbs': 'Hi {{name}}', 'greet/en/text.hbs': '{{nmae}}' });
    expect(() => loadTemplateCatalog(dir)).toThrow(/greet\/en\/text\.hbs: uses \{\{nmae\}\}/);
  });

  it('a missing text part, or a default locale without a folder', () => {
    const noText = catalogDir({ 'greet/template.json': manifest, 'greet/en/subject.hbs': 'Hi' });
    expect(() => loadTemplateCatalog(noText)).toThrow(/greet\/en\/text\.hbs: missing/);
    const noDefault = catalogDir({ 'greet/template.json': manifest, 'greet/de/subject.hbs': 'Hi', 'greet/de/text.hbs': 'x' });
    expect(() => loadTemplateCatalog(noDefault)).toThrow(/defaultLocale "en" has no folder/);
  });

  it("an HTML link whose address starts with a variable not written {{safeUrl ...}}", () => {
    const parts = { 'greet/template.json': manifest, 'greet/en/subject.hbs': 'Hi', 'greet/en/text.hbs': '{{name}}' };
    for (const html of ['<a href="{{name}}">x</a>', "<img src='{{{name}}}'>", '<a\n  href={{name}}>x</a>', '<a href="{{#if name}}{{safeUrl name}}{{/if}}">x</a>']) {
      const dir = catalogDir({ ...parts, 'greet/en/html.hbs': html });
      expect(() => loadTemplateCatalog(dir), html).toThrow(/greet\/en\/html\.hbs: line \d+: a link's address starts with \{\{.*write it \{\{safeUrl \.\.\.\}\}/);
    }
    // The helper, or a scheme and host the template writes itself, is fine; plain text is not HTML.
    for (const html of ['<a href="{{safeUrl name}}">{{name}}</a>', '<a href="https://x.test/r?t={{name}}">x</a>', '<p title="{{name}}">x</p>']) {
      expect(() => loadTemplateCatalog(catalogDir({ ...parts, 'greet/en/html.hbs': html })), html).not.toThrow();
    }
    expect(() => loadTemplateCatalog(catalogDir({ ...parts, 'greet/en/text.hbs': 'href="{{name}}"' }))).not.toThrow();
  });

  it('a manifest that is not JSON', () => {
    const dir = catalogDir({ 'greet/template.json': '{', 'greet/en/subject.hbs': 'Hi', 'greet/en/text.hbs': 'x' });
    expect(() => loadTemplateCatalog(dir)).toThrow(/greet\/template\.json: not valid JSON/);
  });
});
