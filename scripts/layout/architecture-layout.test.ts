// docs/architecture.md's "Layout" block is the map a newcomer reads first, so it is checked against
// the tree: every folder at the top of the repository is on it, and for each app and package the
// source files and folders it names are exactly the ones there (tests and test kits aside).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '..', '..');

function layoutBlock(): string[] {
  const doc = readFileSync(path.join(root, 'docs', 'architecture.md'), 'utf8');
  const section = doc.split(/^## Layout$/m)[1] ?? '';
  const block = /```\n([\s\S]*?)```/.exec(section)?.[1];
  if (!block) throw new Error('docs/architecture.md has no ```-fenced block under "## Layout"');
  return block.split('\n').filter((line) => line.trim() !== '');
}

/** "  mta/src/   edge.ts main.ts; accept/ data/" (and its continuation lines) per source folder. */
function sourceFolders(lines: string[]): Map<string, Set<string>> {
  const folders = new Map<string, Set<string>>();
  let parent = '';
  let current: Set<string> | null = null;
  for (const line of lines) {
    const top = /^([a-z.][\w.-]*\/)/.exec(line);
    if (top) {
      parent = top[1] as string;
      current = null;
      continue;
    }
    const nested = /^ {2}([\w-]+\/src\/)\s+(.*)$/.exec(line);
    if (nested) {
      current = new Set();
      folders.set(parent + (nested[1] as string), current);
      for (const word of (nested[2] as string).replace(';', ' ').split(/\s+/)) if (word) current.add(word);
      continue;
    }
    if (current && /^\s{6,}\S/.test(line)) {
      for (const word of line.replace(/\(.*\)/, '').replace(';', ' ').trim().split(/\s+/)) if (word) current.add(word);
    } else current = null;
  }
  return folders;
}

function isTestFile(name: string): boolean {
  return /\.(test|property\.test|testkit)\.ts$/.test(name);
}

describe('docs/architecture.md layout', () => {
  const lines = layoutBlock();

  it('names every top-level folder of the repository', () => {
    const named = new Set(lines.map((line) => /^([a-z.][\w.-]*)\//.exec(line)?.[1]).filter(Boolean));
    const folders = readdirSync(root, { withFileTypes: true }).filter(
      (entry) => entry.isDirectory() && !entry.name.startsWith('.') && entry.name !== 'node_modules' && !isIgnored(entry.name),
    );
    const missing = folders.map((entry) => entry.name).filter((name) => !named.has(name));
    expect(missing, 'top-level folders missing from the layout').toEqual([]);
  });

  it('lists exactly the source files and folders of every app and package', () => {
    const folders = sourceFolders(lines);
    expect(folders.size).toBeGreaterThanOrEqual(4);
    for (const [folder, named] of folders) {
      const dir = path.join(root, folder);
      expect(existsSync(dir), `${folder} exists`).toBe(true);
      const actual = new Set(
        readdirSync(dir, { withFileTypes: true })
          .filter((entry) => (entry.isDirectory() ? true : entry.name.endsWith('.ts') && !isTestFile(entry.name)))
          .map((entry) => (entry.isDirectory() ? `${entry.name}/` : entry.name)),
      );
      expect([...named].sort(), folder).toEqual([...actual].sort());
    }
  });
});

/** Folders git ignores (.data, node_modules, build output) are not part of the layout. */
function isIgnored(name: string): boolean {
  const ignore = readFileSync(path.join(root, '.gitignore'), 'utf8').split('\n').map((line) => line.trim().replace(/^\//, '').replace(/\/$/, ''));
  return ignore.includes(name);
}
