// A second build of Postern for the benchmarks to run beside the current one (`--baseline <git-ref>`):
// the ref's files exported into a temporary directory (git archive: nothing of this repository's
// worktrees, branches or index changes, so it is safe while others use the same clone), given this
// tree's installed dependencies, so that the only difference between the two is the code. Each
// workspace package of the ref (@postern/*) resolves to the ref's own sources; every other package
// is a link to this tree's node_modules, so a ref whose lock file pins other versions runs with these
// ones (the bench says so when the lock files differ).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** This checkout's root. */
export const CURRENT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface BuildTree {
  /** Where the build's repository root is. */
  root: string;
  /** `<ref> (<short commit>)`, for the figures. */
  label: string;
  remove(): void;
}

const WORKSPACES: Record<string, string> = { api: 'apps/api', core: 'apps/core', mta: 'apps/mta', shared: 'packages/shared' };

function git(args: string[]): string {
  return execFileSync('git', args, { cwd: CURRENT_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
}

function linkDependencies(root: string): void {
  const modules = path.join(root, 'node_modules');
  mkdirSync(path.join(modules, '@postern'), { recursive: true });
  for (const entry of readdirSync(path.join(CURRENT_ROOT, 'node_modules'))) {
    if (entry === '@postern') continue;
    symlinkSync(path.join(CURRENT_ROOT, 'node_modules', entry), path.join(modules, entry));
  }
  for (const [name, folder] of Object.entries(WORKSPACES)) {
    if (!existsSync(path.join(root, folder))) continue;
    symlinkSync(path.join(root, folder), path.join(modules, '@postern', name));
    // A workspace's own node_modules (a version other than the hoisted one) comes along too.
    const own = path.join(CURRENT_ROOT, folder, 'node_modules');
    if (existsSync(own) && !existsSync(path.join(root, folder, 'node_modules'))) symlinkSync(own, path.join(root, folder, 'node_modules'));
  }
}

/** The files of `ref` in a temporary directory, ready to run with this tree's dependencies. */
export function exportBuildTree(ref: string): BuildTree {
  const commit = git(['rev-parse', '--verify', `${ref}^{commit}`]);
  const parent = mkdtempSync(path.join(os.tmpdir(), 'postern-baseline-'));
  const root = path.join(parent, 'tree');
  mkdirSync(root);
  execFileSync('sh', ['-c', 'git archive --format=tar "$1" | tar -x -C "$2"', 'sh', commit, root], { cwd: CURRENT_ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
  linkDependencies(root);
  const lockDiffers = git(['diff', '--name-only', commit, '--', 'package-lock.json']) !== '';
  const label = `${ref} (${commit.slice(0, 9)})`;
  if (lockDiffers) console.log(`# note: ${label} pins other dependencies than this tree; it runs with this tree's node_modules`);
  return { root, label, remove: () => rmSync(parent, { recursive: true, force: true }) };
}
