#!/usr/bin/env node
// `npm start` and `npm test` on a fresh machine: this launcher is the one file the oldest supported
// Node runs (>= 18, plain CommonJS, no dependencies). It makes sure of what the real scripts need,
// one progress line per step, and does nothing the second time:
//   1. a Node >= 22.12 (Postern runs TypeScript through Node's type stripping): the one on the PATH,
//      else Node 24 installed once from the npm registry (package node-<platform>-<arch>) into
//      $POSTERN_TOOLS_DIR (default ~/.cache/postern);
//   2. the pinned dependencies: `npm ci` when node_modules is missing or older than
//      package-lock.json (falling back to `npm install --no-save` where the registry mirror lacks
//      another platform's optional binaries, npm's EUSAGE), run under that Node so the postinstall
//      patches apply with it (npm itself runs under it too);
//   3. then runs scripts/<command>.ts under that Node, passing on its arguments, its signals and
//      its exit code.
'use strict';
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const MINIMUM = [22, 12];
const root = path.resolve(__dirname, '..');
const command = process.argv[2];
const args = process.argv.slice(3);
const scripts = { start: 'scripts/start.ts', test: 'scripts/test.ts', migrate: 'scripts/migrate.ts' };

function say(line) {
  process.stderr.write(`postern: ${line}\n`);
}

function fail(what, why, todo) {
  say(`${what}: ${why}`);
  if (todo) say(todo);
  process.exit(1);
}

function versionOk(version) {
  const [major, minor] = version.replace(/^v/, '').split('.').map(Number);
  return major > MINIMUM[0] || (major === MINIMUM[0] && minor >= MINIMUM[1]);
}

/** npm as the machine has it: the one running this script (npm_execpath) or the one on the PATH. */
function npm(npmArgs, env, node = process.execPath) {
  const execPath = process.env.npm_execpath;
  const [file, fileArgs] = execPath && /npm-cli\.js$/.test(execPath) ? [node, [execPath, ...npmArgs]] : ['npm', npmArgs];
  return spawnSync(file, fileArgs, { cwd: root, env, stdio: ['ignore', 'inherit', 'pipe'], encoding: 'utf8' });
}

function ensureNode() {
  if (versionOk(process.version)) return { node: process.execPath, binDir: path.dirname(process.execPath) };
  const toolsDir = path.join(process.env.POSTERN_TOOLS_DIR || path.join(os.homedir(), '.cache', 'postern'), 'node-24');
  const pkg = `node-${process.platform}-${process.arch}`;
  const binDir = path.join(toolsDir, 'node_modules', pkg, 'bin');
  const node = path.join(binDir, 'node');
  if (!fs.existsSync(node)) {
    say(`Node ${process.version} is older than ${MINIMUM.join('.')}; installing Node 24 from the npm registry into ${toolsDir} (once)`);
    fs.mkdirSync(toolsDir, { recursive: true });
    const result = npm(['install', '--prefix', toolsDir, '--no-save', '--no-package-lock', '--no-audit', '--no-fund', `${pkg}@24`], process.env);
    if (result.status !== 0 || !fs.existsSync(node)) {
      fail('could not install Node 24', (result.stderr || '').trim().split('\n').slice(-3).join(' ') || `npm exited ${result.status}`, `install Node >= ${MINIMUM.join('.')} yourself and run again`);
    }
  }
  const version = spawnSync(node, ['--version'], { encoding: 'utf8' }).stdout.trim();
  if (!versionOk(version)) fail(`${node} is Node ${version}`, `Postern needs >= ${MINIMUM.join('.')}`, `remove ${toolsDir} and run again`);
  say(`using Node ${version} (${node})`);
  return { node, binDir };
}

function mtime(file) {
  try {
    return fs.statSync(file).mtimeMs;
  } catch {
    return -1;
  }
}

function ensureDependencies(node, env) {
  const installed = mtime(path.join(root, 'node_modules', '.package-lock.json'));
  const lock = mtime(path.join(root, 'package-lock.json'));
  if (installed >= 0 && installed >= lock) return;
  say(installed < 0 ? 'installing the pinned dependencies (npm ci; a minute or two, once)' : 'package-lock.json changed: reinstalling the pinned dependencies (npm ci)');
  let result = npm(['ci', '--no-audit', '--no-fund'], env, node);
  if (result.status !== 0 && /EUSAGE/.test(result.stderr || '')) {
    say('npm ci refused the lock file (another platform\'s optional binaries are missing from the registry mirror); npm install --no-save installs the same locked versions');
    result = npm(['install', '--no-save', '--no-audit', '--no-fund'], env, node);
  }
  if (result.status !== 0) {
    process.stderr.write(result.stderr || '');
    fail('installing the dependencies failed', `npm exited ${result.status}`, 'read npm\'s output above; a second run retries');
  }
}

function main() {
  const script = scripts[command];
  if (!script) fail('usage', `node scripts/launch.cjs <${Object.keys(scripts).join('|')}> [arguments]`);
  const { node, binDir } = ensureNode();
  const env = { ...process.env, PATH: `${binDir}${path.delimiter}${process.env.PATH || ''}` };
  ensureDependencies(node, env);
  // The IPC channel is how the child knows this launcher is gone, even killed outright (SIGKILL):
  // the kernel closes it, and the child stops as if sent SIGTERM (scripts/start.ts).
  const child = spawn(node, [path.join(root, script), ...args], { cwd: root, env, stdio: ['inherit', 'inherit', 'inherit', 'ipc'] });
  // A terminal's Ctrl-C reaches the whole foreground group, the child included: it decides.
  process.on('SIGINT', () => {});
  for (const signal of ['SIGTERM', 'SIGHUP']) process.on(signal, () => child.kill(signal));
  // Killed parent (npm itself killed outright): stop the child as if told to, never orphan it.
  const parent = process.ppid;
  const watch = setInterval(() => {
    if (process.ppid !== parent) {
      clearInterval(watch);
      child.kill('SIGTERM');
    }
  }, 500);
  child.on('error', (error) => fail(`could not run ${script}`, error.message));
  child.on('exit', (code, signal) => {
    clearInterval(watch);
    if (signal) {
      process.removeAllListeners(signal);
      process.kill(process.pid, signal);
    } else process.exit(code === null ? 1 : code);
  });
}

main();
