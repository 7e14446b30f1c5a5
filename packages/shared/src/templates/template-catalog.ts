// The immutable template catalog (no-health-endpoints: "MAIL_TEMPLATE_DIR points to the intended immutable
// template catalog ... template changes are not hot-reloaded"). It is read and compiled completely
// at startup: a broken template stops the process and names its file, instead of failing the first
// delivery that happens to use it hours later (silent-encoding-change: failures must be loud and early).
//
// Layout:  <dir>/<template-id>/template.json
//          <dir>/<template-id>/<locale>/subject.hbs  text.hbs  [html.hbs]
// template.json: { "description": "...", "defaultLocale": "en", "category": "authsession" | ...,
//                  "variables": ["code", ...], "optionalVariables": [...] }
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import Handlebars from 'handlebars';
import { LINK_HELPER, LINK_HELPER_WITHOUT_DATA, registerLinkHelper, unguardedLinks } from './link-addresses.ts';
import { referencedVariables } from './referenced-variables.ts';

export class TemplateCatalogError extends Error {
  readonly file: string;
  constructor(file: string, message: string) {
    super(`template catalog: ${file}: ${message}`);
    this.name = 'TemplateCatalogError';
    this.file = file;
  }
}

export interface TemplateLocale {
  locale: string;
  /** sha256 over template.json and this locale's files: recorded on every delivery. */
  hash: string;
  subject: Handlebars.TemplateDelegate;
  text: Handlebars.TemplateDelegate;
  html: Handlebars.TemplateDelegate | null;
}

export interface TemplateDefinition {
  id: string;
  description: string;
  defaultLocale: string;
  category: string | null;
  /** Every one must be present (not null) in a command's variables, or it is refused. */
  variables: readonly string[];
  optionalVariables: readonly string[];
  locales: ReadonlyMap<string, TemplateLocale>;
}

export interface TemplateCatalog {
  dir: string;
  templates: ReadonlyMap<string, TemplateDefinition>;
}

const ID_PATTERN = /^[a-z0-9][a-z0-9-]{0,63}$/;
const LOCALE_PATTERN = /^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$/;

/** BCP 47 case conventions: language lower case, region upper case ("pt-br" -> "pt-BR"). */
export function canonicalLocale(locale: string): string {
  const [language = '', ...rest] = locale.trim().replace(/_/g, '-').split('-');
  return [language.toLowerCase(), ...rest.map((part) => (part.length === 2 ? part.toUpperCase() : part))].join('-');
}

function readManifest(file: string): Omit<TemplateDefinition, 'id' | 'locales'> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new TemplateCatalogError(file, `not valid JSON (${(error as Error).message})`);
  }
  const manifest = parsed as Record<string, unknown>;
  const stringList = (key: string): string[] => {
    const value = manifest[key] ?? [];
    if (!Array.isArray(value) || !value.every((item) => typeof item === 'string' && /^[A-Za-z_][A-Za-z0-9_]*$/.test(item))) {
      throw new TemplateCatalogError(file, `"${key}" must be a list of variable names`);
    }
    return value as string[];
  };
  if (typeof manifest.defaultLocale !== 'string' || !LOCALE_PATTERN.test(manifest.defaultLocale)) {
    throw new TemplateCatalogError(file, '"defaultLocale" must be a locale such as "en"');
  }
  if (manifest.category !== undefined && typeof manifest.category !== 'string') {
    throw new TemplateCatalogError(file, '"category" must be a string');
  }
  return {
    description: typeof manifest.description === 'string' ? manifest.description : '',
    defaultLocale: canonicalLocale(manifest.defaultLocale),
    category: (manifest.category as string | undefined) ?? null,
    variables: stringList('variables'),
    optionalVariables: stringList('optionalVariables'),
  };
}

function compileFile(
  handlebars: typeof Handlebars,
  file: string,
  declared: ReadonlySet<string>,
  escapeHtml: boolean,
): { delegate: Handlebars.TemplateDelegate; source: string } {
  const source = readFileSync(file, 'utf8');
  let ast: hbs.AST.Program;
  try {
    ast = handlebars.parse(source);
  } catch (error) {
    throw new TemplateCatalogError(file, `does not parse: ${(error as Error).message.split('\n')[0]}`);
  }
  for (const name of referencedVariables(ast)) {
    if (!declared.has(name)) {
      throw new TemplateCatalogError(file, `uses {{${name}}}, which template.json declares in neither "variables" nor "optionalVariables"`);
    }
  }
  if (escapeHtml) {
    const [link] = unguardedLinks(ast, source);
    if (link) {
      throw new TemplateCatalogError(
        file,
        `line ${link.line}: a link's address starts with ${link.expression}: write it {{${LINK_HELPER} ...}}, which lets only absolute http, https and mailto URLs in (docs/core.md, "Templates")`,
      );
    }
  }
  // Compile eagerly (Handlebars compiles lazily on first call) so that errors surface now.
  const delegate = handlebars.compile(source, { noEscape: !escapeHtml, strict: false });
  try {
    delegate({}, { helpers: LINK_HELPER_WITHOUT_DATA });
  } catch (error) {
    throw new TemplateCatalogError(file, `does not compile: ${(error as Error).message.split('\n')[0]}`);
  }
  return { delegate, source };
}

function loadTemplate(handlebars: typeof Handlebars, dir: string, id: string): TemplateDefinition {
  const templateDir = path.join(dir, id);
  const manifestFile = path.join(templateDir, 'template.json');
  if (!existsSync(manifestFile)) throw new TemplateCatalogError(manifestFile, 'missing');
  const manifest = readManifest(manifestFile);
  const manifestText = readFileSync(manifestFile, 'utf8');
  const declared = new Set([...manifest.variables, ...manifest.optionalVariables]);
  const locales = new Map<string, TemplateLocale>();
  for (const entry of readdirSync(templateDir).sort()) {
    const localeDir = path.join(templateDir, entry);
    if (!statSync(localeDir).isDirectory()) continue;
    if (!LOCALE_PATTERN.test(entry)) throw new TemplateCatalogError(localeDir, 'folder name is not a locale (e.g. en, pt-BR)');
    const hash = createHash('sha256').update(manifestText);
    const part = (name: string, escapeHtml: boolean, required: boolean) => {
      const file = path.join(localeDir, name);
      if (!existsSync(file)) {
        if (required) throw new TemplateCatalogError(file, 'missing');
        return null;
      }
      const compiled = compileFile(handlebars, file, declared, escapeHtml);
      hash.update(`\0${name}\0`).update(compiled.source);
      return compiled.delegate;
    };
    const subject = part('subject.hbs', false, true) as Handlebars.TemplateDelegate;
    const text = part('text.hbs', false, true) as Handlebars.TemplateDelegate;
    const html = part('html.hbs', true, false);
    const locale = canonicalLocale(entry);
    locales.set(locale, { locale, hash: `sha256:${hash.digest('hex')}`, subject, text, html });
  }
  if (!locales.has(manifest.defaultLocale)) {
    throw new TemplateCatalogError(path.join(templateDir, manifest.defaultLocale), `defaultLocale "${manifest.defaultLocale}" has no folder`);
  }
  return { id, ...manifest, locales };
}

/** Reads and compiles every template under `dir`; throws TemplateCatalogError naming the file. */
export function loadTemplateCatalog(dir: string): TemplateCatalog {
  const root = path.resolve(dir);
  if (!existsSync(root) || !statSync(root).isDirectory()) throw new TemplateCatalogError(root, 'not a directory');
  // An isolated Handlebars environment: no helper or partial registered elsewhere leaks in; its one
  // helper is safeUrl (link-addresses.ts).
  const handlebars = Handlebars.create();
  registerLinkHelper(handlebars);
  const templates = new Map<string, TemplateDefinition>();
  for (const entry of readdirSync(root).sort()) {
    const entryPath = path.join(root, entry);
    if (!statSync(entryPath).isDirectory() || entry.startsWith('.')) continue;
    if (!ID_PATTERN.test(entry)) throw new TemplateCatalogError(entryPath, 'template id must be lower-case letters, digits and dashes');
    templates.set(entry, loadTemplate(handlebars, root, entry));
  }
  return { dir: root, templates };
}
