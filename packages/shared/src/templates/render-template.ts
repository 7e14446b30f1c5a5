// Choosing a locale and rendering. Locale fallback, in order (documented in docs/core.md):
//   1. the exact locale asked for ("pt-BR"),
//   2. its language alone ("pt"),
//   3. the template's defaultLocale (template.json).
// A missing locale is never an error: the mail goes out in the default language. A missing
// *variable* is an error, caught at intake (missingVariables), never rendered as an empty string.
import { canonicalLocale, type TemplateCatalog, type TemplateDefinition, type TemplateLocale } from './template-catalog.ts';

export interface RenderedContent {
  subject: string;
  text: string;
  html: string | null;
}

export function resolveLocale(template: TemplateDefinition, requested: string | null | undefined): TemplateLocale {
  if (requested) {
    const wanted = canonicalLocale(requested);
    const exact = template.locales.get(wanted);
    if (exact) return exact;
    const language = template.locales.get(wanted.split('-')[0] ?? '');
    if (language) return language;
  }
  return template.locales.get(template.defaultLocale) as TemplateLocale;
}

/** Required variables that are absent or null in `variables`, in template.json's order. */
export function missingVariables(template: TemplateDefinition, variables: Record<string, unknown>): string[] {
  return template.variables.filter((name) => variables[name] === undefined || variables[name] === null);
}

/** Variables the template cannot be rendered with. Handlebars turns a value into text with
 *  `'' + value`: an object whose own "toString" (and "valueOf") is not a function, as JSON can
 *  write it (`{"name": {"toString": 1}}`), throws a TypeError there. */
export class TemplateRenderError extends Error {
  constructor(locale: TemplateLocale, cause: unknown) {
    super(`the variables cannot be rendered by the template (locale ${locale.locale}): ${(cause as Error)?.message ?? String(cause)}`, { cause });
    this.name = 'TemplateRenderError';
  }
}

export function renderLocale(locale: TemplateLocale, variables: Record<string, unknown>): RenderedContent {
  try {
    // A subject is one header line: folding is the MIME writer's job, a newline here would be a
    // header injection.
    const subject = locale.subject(variables).replace(/[\r\n]+/g, ' ').trim();
    return { subject, text: locale.text(variables), html: locale.html ? locale.html(variables) : null };
  } catch (error) {
    throw new TemplateRenderError(locale, error);
  }
}

export type TemplateLookup =
  | { ok: true; template: TemplateDefinition; locale: TemplateLocale }
  | { ok: false; reason: 'unknown_template' | 'missing_variable' | 'invalid_field'; detail: string };

/** What intake needs to know before it accepts a template command. */
export function checkTemplateCommand(
  catalog: TemplateCatalog,
  templateId: string,
  locale: string | null,
  variables: Record<string, unknown>,
): TemplateLookup {
  const template = catalog.templates.get(templateId);
  if (!template) {
    return { ok: false, reason: 'unknown_template', detail: `no template "${templateId}" in the catalog` };
  }
  const missing = missingVariables(template, variables);
  if (missing.length > 0) {
    return { ok: false, reason: 'missing_variable', detail: `template "${templateId}" requires ${missing.map((name) => `"${name}"`).join(', ')}` };
  }
  const resolved = resolveLocale(template, locale);
  // Rendered once here, as the attempt will render it: variables the template cannot be rendered
  // with are refused now, not found at every attempt (the worker failed, the delivery waited out
  // its lease as "outcome unknown" and went round the whole retry ladder into a dead letter).
  try {
    renderLocale(resolved, variables);
  } catch (error) {
    if (!(error instanceof TemplateRenderError)) throw error;
    return { ok: false, reason: 'invalid_field', detail: `"variables" of template "${templateId}": ${error.message}` };
  }
  return { ok: true, template, locale: resolved };
}
