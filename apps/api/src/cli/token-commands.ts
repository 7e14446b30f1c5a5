// `postern token create|revoke|list`: the operator's way to hand out and withdraw API tokens.
import { API_SCOPES, ApiTokenInputError, createApiToken, listApiTokens, type Queryable, revokeApiToken } from '@postern/shared';

export class UsageError extends Error {}

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
scopes: ${API_SCOPES.join(', ')} (admin implies every scope)`;

export interface CreateArgs {
  name: string;
  scopes: string[];
  producer?: string;
}

export function parseCreateArgs(argv: readonly string[]): CreateArgs {
  let name: string | undefined;
  let producer: string | undefined;
  const scopes: string[] = [];
  for (let index = 0; index < argv.length; index++) {
    const arg = argv[index] as string;
    const [flag, inline] = arg.includes('=') ? (arg.split(/=(.*)/s, 2) as [string, string]) : [arg, undefined];
    const value = () => {
      const next = inline ?? argv[++index];
      if (next === undefined || next.startsWith('--')) throw new UsageError(`${flag} needs a value`);
      return next;
    };
    if (flag === '--name') name = value();
    else if (flag === '--producer') {
      if (producer !== undefined) throw new UsageError('--producer may be given once: a token sends as one producer');
      producer = value();
    }
    else if (flag === '--scope' || flag === '--scopes') scopes.push(...value().split(',').map((scope) => scope.trim()).filter(Boolean));
    else throw new UsageError(`unknown argument ${arg}`);
  }
  if (!name) throw new UsageError('--name is required');
  if (scopes.length === 0) throw new UsageError('at least one --scope is required');
  return producer === undefined ? { name, scopes } : { name, scopes, producer };
}

export async function tokenCommand(db: Queryable, argv: readonly string[], output: Output): Promise<number> {
  const [action, ...rest] = argv;
  try {
    switch (action) {
      case 'create': {
        const args = parseCreateArgs(rest);
        const { token, record } = await createApiToken(db, args);
        output.err(
          `created token "${record.name}" with scope(s) ${record.scopes.join(', ')}, producer "${record.producer}"; it is shown only this once:`,
        );
        // The token is the last line of stdout, alone, so scripts can take it with `tail -n1`.
        output.out(token);
        return 0;
      }
      case 'revoke': {
        const [name, ...extra] = rest;
        if (!name || extra.length > 0) throw new UsageError('revoke takes exactly one token name');
        if (!(await revokeApiToken(db, name))) {
          output.err(`no active token named "${name}"`);
          return 1;
        }
        output.out(`revoked token "${name}"`);
        return 0;
      }
      case 'list': {
        for (const token of await listApiTokens(db)) {
          const state = token.revokedAt ? `revoked ${token.revokedAt.toISOString()}` : 'active';
          const used = token.lastUsedAt ? `last used ${token.lastUsedAt.toISOString()}` : 'never used';
          output.out(`${token.name}\t${token.scopes.join(',')}\t${token.producer}\t${state}\t${used}`);
        }
        return 0;
      }
      default:
        throw new UsageError(action ? `unknown token command "${action}"` : 'token needs a command');
    }
  } catch (error) {
    if (error instanceof UsageError) {
      output.err(`postern token: ${error.message}\n${TOKEN_USAGE}`);
      return 2;
    }
    if (error instanceof ApiTokenInputError) {
      output.err(`postern token: ${error.message}`);
      return 1;
    }
    throw error;
  }
}
