#!/usr/bin/env node
// The operator CLI: `postern token ...` and `postern secrets ...` of the one `postern` command (bin/postern.ts; npx postern,
// or in the image), also runnable alone. It talks to the database named by
// MAIL_POSTGRES_PRIMARY_DSN, like every Postern process. Exit codes: 0 done,
// 1 refused or failed, 2 a usage or configuration error.
import { ConfigError, createLogger, createPool, loadConfig } from '@postern/shared';
import { parseCommandArgs, UsageError } from './command-args.ts';
import { SECRETS_USAGE, secretsCommand, type WithSecrets } from './secrets-commands.ts';
import { TOKEN_USAGE, tokenCommand, type WithDatabase } from './token-commands.ts';

const USAGE = `postern: the Postern operator CLI (postern --help: this text)\n${TOKEN_USAGE}\n${SECRETS_USAGE}`;

const output = {
  out: (line: string) => process.stdout.write(`${line}\n`),
  err: (line: string) => process.stderr.write(`${line}\n`),
};

/** One connection, for one command; the configuration is read only when a command needs it. */
const withSecrets: WithSecrets = async (use) => {
  const config = loadConfig(process.env, 'tools');
  const pool = createPool({
    dsn: config.postgres.dsn,
    applicationName: 'postern-cli',
    max: 1,
    connectTimeoutMs: config.postgres.connectTimeoutMs,
    logger: createLogger('postern-cli', 'silent'),
  });
  try {
    return await use(pool, config.secretsKey);
  } finally {
    await pool.end();
  }
};

const withDatabase: WithDatabase = (use) => withSecrets((pool) => use(pool));

/** `postern`, `postern help` and `postern --help`; any other option before a command is refused. */
function topLevel(argv: string[]): number {
  const [first] = argv;
  if (first === undefined) {
    output.out(USAGE);
    return 2;
  }
  try {
    if (first === 'help' || (first.startsWith('-') && parseCommandArgs(argv, {}, true) === null)) {
      output.out(USAGE);
      return 0;
    }
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    output.err(`postern: ${error.message}\n${USAGE}`);
    return 2;
  }
  output.err(`postern: unknown command "${first}"\n${USAGE}`);
  return 2;
}

async function main(argv: string[]): Promise<number> {
  const [group, ...rest] = argv;
  if (group !== 'token' && group !== 'secrets') return topLevel(argv);
  try {
    return group === 'token' ? await tokenCommand(rest, output, withDatabase) : await secretsCommand(rest, output, withSecrets);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    output.err(`postern: ${error.message}`);
    return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`postern: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  },
);
