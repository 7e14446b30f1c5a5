// The production source files the lint step's checks read (check-sql-text.ts, check-log-children.ts):
// every script under apps/*/src and packages/*/src, not node_modules or dist, not the tests
// (`*.test.*`) nor type declarations (`*.d.ts`).
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'node_modules' || entry.name === 'dist' ? [] : sourceFiles(full);
    return /\.[cm]?[jt]s$/.test(entry.name) && !/\.test\.[cm]?[jt]s$/.test(entry.name) && !entry.name.endsWith('.d.ts') ? [full] : [];
  });
}

function productionSourceDirs(root: string): string[] {
  return ['apps', 'packages'].flatMap((group) => {
    const groupDir = path.join(root, group);
    return readdirSync(groupDir)
      .map((name) => path.join(groupDir, name, 'src'))
      .filter((dir) => {
        try {
          return statSync(dir).isDirectory();
        } catch {
          return false;
        }
      });
  });
}

/** Absolute paths of the production source files under `root`. */
export function productionSourceFiles(root: string): string[] {
  return productionSourceDirs(root).flatMap(sourceFiles);
}
