// The address of a link in an HTML template comes from a command's variables, and HTML escaping
// does not make it safe: `href="{{url}}"` with `javascript:...` or `data:text/html,...` is a link
// that runs or shows what the producer's data said, in every mail client that follows it. So an
// HTML template writes such an address `{{safeUrl url}}`, and the catalog refuses at startup one that
// starts a link's address (href, src, action, ...) with anything else; the helper lets only
// absolute http, https and mailto URLs in and otherwise fails the render, which intake turns into a
// refusal naming the template (render-template.ts), before anything is queued. An address whose
// scheme and host the template writes itself (`href="https://example.com/r?t={{token}}"`) needs no
// helper: only the start of an address decides where it leads.
import type Handlebars from 'handlebars';

export const LINK_HELPER = 'safeUrl';

const LINK_SCHEMES = new Set(['http:', 'https:', 'mailto:']);
/** HTML attributes whose value is an address a reader's client may follow or load. */
const ADDRESS_ATTRIBUTE = /\b(?:href|src|srcset|action|formaction|background|poster|cite|ping|xlink:href)\s*=\s*["']?$/i;

/** Whether `value` may be a link's address: an absolute http, https or mailto URL. */
export function isLinkAddress(value: unknown): value is string {
  if (typeof value !== 'string' || !URL.canParse(value)) return false;
  return LINK_SCHEMES.has(new URL(value).protocol);
}

function describe(value: unknown): string {
  if (value === undefined || value === null) return 'none';
  if (typeof value !== 'string') return `a ${Array.isArray(value) ? 'list' : typeof value}`;
  if (!URL.canParse(value)) return 'a relative or malformed address';
  return `a "${new URL(value).protocol}" URL`;
}

/** Registers `safeUrl` on a Handlebars environment: the address itself, or an Error saying why not. */
export function registerLinkHelper(handlebars: typeof Handlebars): void {
  handlebars.registerHelper(LINK_HELPER, (value: unknown) => {
    if (!isLinkAddress(value)) throw new Error(`a link's address must be an absolute http, https or mailto URL, and this one is ${describe(value)}`);
    return value;
  });
}

/** For compiling a template once without data: every link's address stands empty. */
export const LINK_HELPER_WITHOUT_DATA = { [LINK_HELPER]: () => '' };

export interface UnguardedLink {
  line: number;
  expression: string;
}

/** Every expression of an HTML template's AST that starts a link's address without `safeUrl`. */
export function unguardedLinks(ast: hbs.AST.Program, source: string): UnguardedLink[] {
  const lineStarts = [0];
  for (let index = source.indexOf('\n'); index !== -1; index = source.indexOf('\n', index + 1)) lineStarts.push(index + 1);
  const offset = (position: hbs.AST.Position) => (lineStarts[position.line - 1] ?? 0) + position.column;
  const found: UnguardedLink[] = [];
  const visit = (program: hbs.AST.Program | undefined) => {
    for (const statement of program?.body ?? []) {
      if (statement.type !== 'MustacheStatement' && statement.type !== 'BlockStatement') continue;
      const start = offset(statement.loc.start);
      if (ADDRESS_ATTRIBUTE.test(source.slice(Math.max(0, start - 64), start)) && !isGuarded(statement)) {
        found.push({ line: statement.loc.start.line, expression: source.slice(start, offset(statement.loc.end)).split('\n')[0] as string });
      }
      if (statement.type === 'BlockStatement') {
        visit((statement as hbs.AST.BlockStatement).program);
        visit((statement as hbs.AST.BlockStatement).inverse);
      }
    }
  };
  visit(ast);
  return found;
}

function isGuarded(statement: hbs.AST.Statement): boolean {
  if (statement.type !== 'MustacheStatement') return false;
  const mustache = statement as hbs.AST.MustacheStatement;
  return mustache.escaped && mustache.path.type === 'PathExpression' && (mustache.path as hbs.AST.PathExpression).original === LINK_HELPER && mustache.params.length === 1;
}
