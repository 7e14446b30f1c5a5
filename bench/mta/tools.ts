// What the edge benchmark needs besides Postern, installed by the bench itself when missing:
// Debian's postfix (smtp-source, smtp-sink, and the Postfix compared with; preseeded to "No
// configuration", so no system daemon starts), a C compiler for the reject client (compiled into the
// cache once per version of its source), and Haraka from npm into the cache directory — not a
// project dependency. Cache: BENCH_CACHE_DIR, default ~/.cache/postern-bench.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const HARAKA_VERSION = '3.3.4';

export interface BenchTools {
  smtpSource: string;
  smtpSink: string;
  postfix: string;
  postconf: string;
  postmap: string;
  rejectClient: string;
  harakaBin: string;
}

const here = path.dirname(fileURLToPath(import.meta.url));

function run(command: string, args: string[], options: { cwd?: string; env?: Record<string, string>; input?: string } = {}): void {
  const result = spawnSync(command, args, {
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
    input: options.input,
    stdio: [options.input === undefined ? 'ignore' : 'pipe', 'inherit', 'inherit'],
  });
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} failed (${result.error?.message ?? result.status ?? result.signal})`);
}

function onPath(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

function aptInstall(packages: string[]): void {
  if (process.getuid?.() !== 0) throw new Error(`the benchmark needs ${packages.join(', ')}: apt-get install them, or run it as root`);
  console.log(`installing ${packages.join(' ')} with apt-get`);
  run('debconf-set-selections', [], { input: 'postfix postfix/main_mailer_type select No configuration\n' });
  const install = () => run('apt-get', ['install', '-y', '-q', '--no-install-recommends', ...packages], { env: { DEBIAN_FRONTEND: 'noninteractive' } });
  try {
    install();
  } catch {
    run('apt-get', ['update', '-q']);
    install();
  }
}

function harakaBin(cacheDir: string): string {
  const dir = path.join(cacheDir, `haraka-${HARAKA_VERSION}`);
  const bin = path.join(dir, 'node_modules', 'Haraka', 'bin', 'haraka');
  if (!existsSync(bin)) {
    console.log(`installing Haraka ${HARAKA_VERSION} with npm into ${dir}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'package.json'), '{ "private": true }\n');
    // --ignore-scripts: only an optional syslog binding builds anything, and nothing here uses it.
    run('npm', ['install', '--no-audit', '--no-fund', '--ignore-scripts', '--save-exact', `Haraka@${HARAKA_VERSION}`], { cwd: dir });
  }
  return bin;
}

function rejectClient(cacheDir: string): string {
  const source = path.join(here, 'reject-client.c');
  const version = createHash('sha256').update(readFileSync(source)).digest('hex').slice(0, 12);
  const binary = path.join(cacheDir, `reject-client-${version}`);
  if (!existsSync(binary)) run('cc', ['-O2', '-pthread', '-o', binary, source]);
  return binary;
}

export function ensureTools(): BenchTools {
  const cacheDir = process.env.BENCH_CACHE_DIR ?? path.join(os.homedir(), '.cache', 'postern-bench');
  mkdirSync(cacheDir, { recursive: true });
  const missing = [
    ...(existsSync('/usr/sbin/smtp-source') && existsSync('/usr/sbin/postfix') ? [] : ['postfix']),
    ...(onPath('cc') ? [] : ['gcc', 'libc6-dev']),
  ];
  if (missing.length > 0) aptInstall(missing);
  return {
    smtpSource: '/usr/sbin/smtp-source',
    smtpSink: '/usr/sbin/smtp-sink',
    postfix: '/usr/sbin/postfix',
    postconf: '/usr/sbin/postconf',
    postmap: '/usr/sbin/postmap',
    rejectClient: rejectClient(cacheDir),
    harakaBin: harakaBin(cacheDir),
  };
}
