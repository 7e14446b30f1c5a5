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

export function renderLocale(locale: TemplateLocale, variables: Record<string, unknown>): RenderedContent {
  // A subject is one header line: folding is the MIME writer's job, a newline here would be a
  // header injection.
  const subject = locale.subject(variables).replace(/[\r\n]+/g, ' ').trim();
  return { subject, text: locale.text(variables), html: locale.html ? locale.html(variables) : null };
}

export type TemplateLookup =
  | { ok: true; template: TemplateDefinition; locale: TemplateLocale }
  | { ok: false; reason: 'unknown_template' | 'missing_variable'; detail: string };

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
  return { ok: true, template, locale: resolveLocale(template, locale) };
}
