// TypeScript source parsed by the TypeScript compiler itself, for lints that need the syntax tree
// rather than the text. TypeScript 7 (the version this repository pins) parses in its native
// compiler, which its JavaScript API runs as a child process: the files are handed to it as a
// virtual file system with a throwaway project (no lib, no module resolution) that lists exactly
// them, so only parsing happens and nothing outside `files` is read. The API lives under
// `typescript/unstable/`; the unit test of the SQL-text lint shows when a new version changes it.
import type { SourceFile } from 'typescript/unstable/ast';
import { createVirtualFileSystem } from 'typescript/unstable/fs';
import { API } from 'typescript/unstable/sync';

const PROJECT = '/__parse-only__/tsconfig.json';

/**
 * Calls `visit` with the syntax tree of each file (absolute path → text), in the order given.
 * The trees are only valid during the call.
 */
export function forEachParsedFile(files: Record<string, string>, visit: (sourceFile: SourceFile) => void): void {
  const names = Object.keys(files);
  const project = JSON.stringify({
    compilerOptions: { noLib: true, noResolve: true, types: [], allowJs: true, skipLibCheck: true },
    files: names,
  });
  const api = new API({ cwd: '/', fs: createVirtualFileSystem({ ...files, [PROJECT]: project }) });
  try {
    const program = api.updateSnapshot({ openProjects: [PROJECT] }).getProject(PROJECT)?.program;
    if (!program) throw new Error('the TypeScript API opened no project for the files to parse');
    for (const name of names) {
      const sourceFile = program.getSourceFile(name);
      if (!sourceFile) throw new Error(`the TypeScript API did not parse ${name}`);
      visit(sourceFile);
    }
  } finally {
    api.close();
  }
}
