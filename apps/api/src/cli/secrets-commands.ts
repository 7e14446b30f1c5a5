// `postern secrets status|reseal`: the database's part of a rotation of MAIL_SECRETS_KEY
// (docs/deploy.md, "Rotating MAIL_SECRETS_KEY"). Both read the keys from the environment, like
// every Postern process: MAIL_SECRETS_KEY, and during the rotation MAIL_SECRETS_KEY_PREVIOUS.
import { keysTried, type Pool, type ResealResult, resealSecrets, type SealedSecretsStatus, type SecretsKey, sealedSecretsStatus, sealedWithPrevious } from '@postern/shared';
import { parseCommandArgs, UsageError } from './command-args.ts';
import type { Output } from './token-commands.ts';

export const SECRETS_USAGE = `usage:
  postern secrets status    which key opens each secret sealed in the database (DKIM keys,
      route passwords): MAIL_SECRETS_KEY, only MAIL_SECRETS_KEY_PREVIOUS, or neither (exit 1)
  postern secrets reseal    seal again with MAIL_SECRETS_KEY every secret only
      MAIL_SECRETS_KEY_PREVIOUS opens, in one transaction; if any secret opens with neither key,
      nothing is changed (exit 1)
  postern secrets [COMMAND] --help   this text
rotating MAIL_SECRETS_KEY, step by step: docs/deploy.md, "Rotating MAIL_SECRETS_KEY"`;

/** Runs `use` with the database and the configured keys (null: MAIL_SECRETS_KEY unset). */
export type WithSecrets = <T>(use: (pool: Pool, secretsKey: SecretsKey | null) => Promise<T>) => Promise<T>;

type SecretsAction = 'status' | 'reseal' | 'help';

/** What `postern secrets ARGS...` asks for; throws UsageError. Needs no database. */
export function parseSecretsCommand(argv: readonly string[]): SecretsAction {
  const [action, ...rest] = argv;
  if (action === undefined) throw new UsageError('a command is required (status or reseal)');
  if (action === '--help' || action === '-h' || action === 'help') return 'help';
  if (action !== 'status' && action !== 'reseal') throw new UsageError(`unknown command "${action}"`);
  return parseCommandArgs(rest, {}) === null ? 'help' : action;
}

function report(status: SealedSecretsStatus, secretsKey: SecretsKey, output: Output): void {
  for (const { kind, current, previous } of status.kinds) {
    const old = secretsKey.previous === null ? '' : `, ${previous} only MAIL_SECRETS_KEY_PREVIOUS opens`;
    output.out(`${kind}s: ${current} sealed with MAIL_SECRETS_KEY${old}`);
  }
  reportUnopenable(status.unopenable, secretsKey, output);
}

/** The values no configured key opens, naming the keys tried. */
function reportUnopenable(problems: readonly string[], secretsKey: SecretsKey, output: Output): void {
  for (const problem of problems) output.err(`cannot be opened with ${keysTried(secretsKey)}: ${problem}`);
}

/** `postern secrets ARGS...`: 0 done, 1 a secret neither key opens, 2 a usage or configuration error. */
export async function secretsCommand(argv: readonly string[], output: Output, withSecrets: WithSecrets): Promise<number> {
  let action: SecretsAction;
  try {
    action = parseSecretsCommand(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    output.err(`postern secrets: ${error.message}\n${SECRETS_USAGE}`);
    return 2;
  }
  if (action === 'help') {
    output.out(SECRETS_USAGE);
    return 0;
  }
  return withSecrets(async (pool, secretsKey) => {
    if (secretsKey === null) {
      output.err('postern secrets: MAIL_SECRETS_KEY is not set (the key that seals, the same value the API and the engines have)');
      return 2;
    }
    if (action === 'status') {
      const status = await sealedSecretsStatus(pool, secretsKey);
      report(status, secretsKey, output);
      if (status.unopenable.length > 0) return 1;
      if (secretsKey.previous !== null) {
        output.out(
          sealedWithPrevious(status) === 0
            ? 'nothing is sealed with MAIL_SECRETS_KEY_PREVIOUS any more: it can be removed from every process'
            : 'run postern secrets reseal to seal those again with MAIL_SECRETS_KEY',
        );
      }
      return 0;
    }
    const result: ResealResult = await resealSecrets(pool, secretsKey);
    if (result.refused) {
      reportUnopenable(result.unopenable, secretsKey, output);
      output.err(
        'postern secrets reseal: nothing was changed. Give the key that sealed the values above as MAIL_SECRETS_KEY_PREVIOUS, or set them again (rotateDkimKey, setRoute)',
      );
      return 1;
    }
    for (const { kind, current, previous } of result.kinds) output.out(`${kind}s: ${previous} resealed, ${current} already sealed with MAIL_SECRETS_KEY`);
    output.out(
      secretsKey.previous === null
        ? 'MAIL_SECRETS_KEY_PREVIOUS is not set: nothing to reseal'
        : `resealed ${result.resealed}; nothing is sealed with MAIL_SECRETS_KEY_PREVIOUS any more: it can be removed from every process`,
    );
    return 0;
  });
}
