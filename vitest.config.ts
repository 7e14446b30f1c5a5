// Unit tests live next to the code (*.test.ts, no infrastructure); integration and end-to-end
// tests live in e2e/ and run against containers the global setup starts (e2e/harness/).
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// One fixed seed for every property test (scripts/fast-check-seed.ts).
const propertySeed = fileURLToPath(new URL('./scripts/fast-check-seed.ts', import.meta.url));

const unit = (name: string, dir: string) => ({
  test: {
    name,
    root: dir,
    include: ['src/**/*.test.ts'],
    environment: 'node',
    setupFiles: [propertySeed],
    // A unit test's timeout is there to end a hang, not to time it: the property tests run
    // thousands of cases, and on two vCPUs shared with other work one took over 5 s (vitest's
    // default) at a load of 20: it ran 5.5 s and was failed for it.
    testTimeout: 60_000,
  },
});

// graphql@16 has no "exports" map: Node resolves it to its CommonJS build (index.js), which is what
// Pothos and yoga load, while Vite's resolver would pick index.mjs for the test's own imports. Two
// copies of graphql-js in one process fail with "Cannot use GraphQLSchema from another module or
// realm"; resolving every import to the file Node picks keeps one copy.
const graphqlEntry = createRequire(import.meta.url).resolve('graphql');

export default defineConfig({
  resolve: { alias: [{ find: /^graphql$/, replacement: graphqlEntry }] },
  test: {
    // Global setup teardown stops every container; give it time on a loaded machine.
    teardownTimeout: 60_000,
    projects: [
      // A project exists only once its folder does, so a partial checkout still runs.
      ...[
        ['shared', 'packages/shared'],
        ['mta', 'apps/mta'],
        ['core', 'apps/core'],
        ['api', 'apps/api'],
      ]
        .filter(([, dir]) => existsSync(`${dir}/package.json`))
        .map(([name, dir]) => unit(name as string, dir as string)),
      // The repository's own checks (the SQL-text lint), tested like any unit.
      {
        test: {
          name: 'scripts',
          root: 'scripts',
          include: ['**/*.test.ts'],
          environment: 'node',
        },
      },
      // The `postern` command (bin/postern.ts) and its health check.
      { test: { name: 'bin', root: 'bin', include: ['*.test.ts'], environment: 'node' } },
      {
        test: {
          name: 'e2e',
          root: '.',
          include: ['e2e/**/*.e2e.test.ts'],
          environment: 'node',
          globalSetup: ['e2e/harness/global-setup.ts'],
          setupFiles: [propertySeed],
          // Containers are shared by every file; each file gets its own database.
          testTimeout: 120_000,
          hookTimeout: 180_000,
          // Two cores: more workers only fight over them.
          maxWorkers: 2,
        },
      },
    ],
  },
});
