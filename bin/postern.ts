#!/usr/bin/env node
// `postern <command>`: the one command that runs any Postern process, so the image, the systemd
// units (`node /opt/postern/bin/postern.ts mta`) and `npx postern` name processes the same way. It
// only chooses the entry module and loads it into this process: signals, exit codes and
// configuration stay the entry's own (runService, bootConfig), and a container's PID 1 is the
// process itself, with no wrapper between it and `docker stop`.
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const root = path.resolve(import.meta.dirname, '..');

interface Command {
  entry: string;
  /** The entry reads the rest of process.argv itself; the others take no arguments. */
  takesArguments: boolean;
  what: string;
}

const COMMANDS: Record<string, Command> = {
  mta: { entry: 'apps/mta/src/main.ts', takesArguments: false, what: 'the SMTP edge' },
  core: { entry: 'apps/core/src/main.ts', takesArguments: false, what: 'the delivery engine' },
  api: { entry: 'apps/api/src/main.ts', takesArguments: false, what: 'the GraphQL API' },
  migrate: { entry: 'scripts/migrate.ts', takesArguments: false, what: 'apply pending migrations and exit' },
  // The CLI parses process.argv.slice(2) itself, which is `token ...` or `secrets ...` here as well.
  token: { entry: 'apps/api/src/cli/postern.ts', takesArguments: true, what: 'create, list and revoke API tokens (postern token --help)' },
  secrets: { entry: 'apps/api/src/cli/postern.ts', takesArguments: true, what: 'which key opens the sealed secrets; reseal them in a MAIL_SECRETS_KEY rotation (postern secrets --help)' },
  healthcheck: { entry: 'bin/healthcheck.ts', takesArguments: true, what: "exit 0 when this container's process answers /readyz (the image's HEALTHCHECK)" },
};

const USAGE = [
  'usage: postern <command>',
  ...Object.entries(COMMANDS).map(([name, command]) => `  postern ${name.padEnd(12)} ${command.what}`),
  'Configuration is read from MAIL_* environment variables (README.md, "Configuration").',
].join('\n');

function exitWith(code: number, text: string): void {
  (code === 0 ? process.stdout : process.stderr).write(`${text}\n`);
  process.exitCode = code;
}

const [name, ...rest] = process.argv.slice(2);
const command = name === undefined ? undefined : COMMANDS[name];
if (name === undefined) exitWith(2, USAGE);
else if (name === 'help' || name === '--help' || name === '-h') exitWith(0, USAGE);
else if (command === undefined && name.startsWith('-')) {
  // Options belong after the command (`postern token list --help`); none exists before it.
  exitWith(2, `postern: unknown option "${name}" (options go after the command)\n${USAGE}`);
} else if (command === undefined) exitWith(2, `postern: unknown command "${name}"\n${USAGE}`);
else if (!command.takesArguments && rest.length > 0) {
  exitWith(2, `postern ${name}: takes no arguments (got ${rest.join(' ')}); it is configured by the environment`);
} else await import(pathToFileURL(path.join(root, command.entry)).href);
