#!/usr/bin/env node
// The operator CLI, installed as the workspace bin `postern` (npx postern ...). It talks to the
// database named by MAIL_POSTGRES_PRIMARY_DSN, like every Postern process.
import { ConfigError, createLogger, createPool, loadConfig } from '@postern/shared';
import { TOKEN_USAGE, tokenCommand } from './token-commands.ts';

const USAGE = `postern: the Postern operator CLI\n${TOKEN_USAGE}`;

async function main(argv: string[]): Promise<number> {
  const [group, ...rest] = argv;
  if (!group || group === '--help' || group === '-h' || group === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return group ? 0 : 2;
  }
  if (group !== 'token') {
    process.stderr.write(`postern: unknown command "${group}"\n${USAGE}\n`);
    return 2;
  }
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig(process.env, 'tools');
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`postern: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
  const pool = createPool({
    dsn: config.postgres.dsn,
    applicationName: 'postern-cli',
    max: 1,
    connectTimeoutMs: config.postgres.connectTimeoutMs,
    logger: createLogger('postern-cli', 'silent'),
  });
  try {
    return await tokenCommand(pool, rest, {
      out: (line) => process.stdout.write(`${line}\n`),
      err: (line) => process.stderr.write(`${line}\n`),
    });
  } finally {
    await pool.end();
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
