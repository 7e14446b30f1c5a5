// `postern token create|revoke|list`: the operator's way to hand out and withdraw API tokens.
import { API_SCOPES, ApiTokenInputError, createApiToken, listApiTokens, type Queryable, revokeApiToken } from '@postern/shared';
import { parseCommandArgs, UsageError } from './command-args.ts';

export { UsageError };

export interface Output {
  out(line: string): void;
  err(line: string): void;
}

export const TOKEN_USAGE = `usage:
  postern token create --name NAME --scope SCOPE [--scope SCOPE ...] [--producer PRODUCER]
      scopes may also be comma-separated; PRODUCER is the one source the token sends as
      (sendEmail), shared by every token given it (e.g. the old and new token of a rotation);
      without it the token sends as "api:NAME", a producer of its own
  postern token revoke NAME
  postern token list          (one line per token: name, scopes, producer, active/revoked, last use)
  postern token [COMMAND] --help   this text
scopes: ${API_SCOPES.join(', ')} (admin implies every scope)`;

export interface CreateArgs {
  name: string;
  scopes: string[];
  producer?: string;
}

const CREATE_OPTIONS = {
  name: { type: 'string' },
  scope: { type: 'string', multiple: true },
  scopes: { type: 'string', multiple: true },
  // Taken as a list so that a second one is refused rather than silently replacing the first.
  producer: { type: 'string', multiple: true },
} as const;

/** The arguments of `token create`, or null when --help was asked for. */
export function parseCreateArgs(argv: readonly string[]): CreateArgs | null {
  const parsed = parseCommandArgs(argv, CREATE_OPTIONS);
  if (!parsed) return null;
  const { name, scope = [], scopes: scopeLists = [], producer = [] } = parsed.values;
  if (producer.length > 1) throw new UsageError('--producer may be given once: a token sends as one producer');
  const scopes = [...scope, ...scopeLists].flatMap((list) => list.split(',')).map((item) => item.trim()).filter(Boolean);
  if (!name) throw new UsageError('--name is required');
  if (scopes.length === 0) throw new UsageError('at least one --scope is required');
  return producer[0] === undefined ? { name, scopes } : { name, scopes, producer: producer[0] };
}

export type TokenCommand =
  | { action: 'create'; args: CreateArgs }
  | { action: 'revoke'; name: string }
  | { action: 'list' }
  | { action: 'help' };

/** What `postern token ARGS...` asks for; throws UsageError. Needs no database. */
export function parseTokenCommand(argv: readonly string[]): TokenCommand {
  const [action, ...rest] = argv;
  switch (action) {
    case 'create': {
      const args = parseCreateArgs(rest);
      return args ? { action, args } : { action: 'help' };
    }
    case 'revoke': {
      const parsed = parseCommandArgs(rest, {}, true);
      if (!parsed) return { action: 'help' };
      const [name, ...extra] = parsed.positionals;
      if (!name || extra.length > 0) throw new UsageError('revoke takes exactly one token name');
      return { action, name };
    }
    case 'list':
      return parseCommandArgs(rest, {}) ? { action } : { action: 'help' };
    case undefined:
      throw new UsageError('token needs a command');
    default:
      // `postern token --help`; any other option before the command is refused by parseArgs.
      if (action.startsWith('-') && parseCommandArgs(argv, {}) === null) return { action: 'help' };
      throw new UsageError(`unknown token command "${action}"`);
  }
}

async function runTokenCommand(db: Queryable, command: Exclude<TokenCommand, { action: 'help' }>, output: Output): Promise<number> {
  switch (command.action) {
    case 'create': {
      const { token, record } = await createApiToken(db, command.args);
      output.err(
        `created token "${record.name}" with scope(s) ${record.scopes.join(', ')}, producer "${record.producer}"; it is shown only this once:`,
      );
      // The token is the last line of stdout, alone, so scripts can take it with `tail -n1`.
      output.out(token);
      return 0;
    }
    case 'revoke':
      if (!(await revokeApiToken(db, command.name))) {
        output.err(`no active token named "${command.name}"`);
        return 1;
      }
      output.out(`revoked token "${command.name}"`);
      return 0;
    case 'list':
      for (const token of await listApiTokens(db)) {
        const state = token.revokedAt ? `revoked ${token.revokedAt.toISOString()}` : 'active';
        const used = token.lastUsedAt ? `last used ${token.lastUsedAt.toISOString()}` : 'never used';
        output.out(`${token.name}\t${token.scopes.join(',')}\t${token.producer}\t${state}\t${used}`);
      }
      return 0;
  }
}

/** Runs `use` against the database and lets go of it afterwards. */
export type WithDatabase = <T>(use: (db: Queryable) => Promise<T>) => Promise<T>;

/**
 * `postern token ARGS...`: 0 done, 1 refused (unknown scope, duplicate name, no such token),
 * 2 a usage error. The database is opened only for a command that parsed.
 */
export async function tokenCommand(argv: readonly string[], output: Output, withDatabase: WithDatabase): Promise<number> {
  let command: TokenCommand;
  try {
    command = parseTokenCommand(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    output.err(`postern token: ${error.message}\n${TOKEN_USAGE}`);
    return 2;
  }
  if (command.action === 'help') {
    output.out(TOKEN_USAGE);
    return 0;
  }
  const parsed = command;
  try {
    return await withDatabase((db) => runTokenCommand(db, parsed, output));
  } catch (error) {
    if (!(error instanceof ApiTokenInputError)) throw error;
    output.err(`postern token: ${error.message}`);
    return 1;
  }
}
