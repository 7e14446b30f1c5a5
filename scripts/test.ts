// `npm test`: typecheck and lint every project (through Nx, cached), then the unit and e2e suites
// (one vitest run over every project), then one closing line `N passed, N failed`, also written to
// .test-results/summary.json for CI. A failed typecheck or lint counts as one failed check each;
// a vitest run that crashed before reporting counts as one failed check.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const resultsDir = path.join(root, '.test-results');
rmSync(resultsDir, { recursive: true, force: true });
mkdirSync(resultsDir, { recursive: true });

// On a machine that reaches no container registry the suites need the locally built images
// (scripts/images/build-local-images.sh, `npm run images:local`). Where those exist and no
// POSTERN_IMAGE_* says otherwise, they are used without sourcing anything first.
function useLocalImagesWhereBuilt(): void {
  const envFile = readFileSync(path.join(root, 'scripts', 'images', 'local-images.env'), 'utf8');
  const chosen: string[] = [];
  for (const [, name, image] of envFile.matchAll(/^export (POSTERN_IMAGE_[A-Z_]+)=(\S+)$/gm)) {
    if (!name || !image || process.env[name]) continue;
    const inspected = spawnSync('docker', ['image', 'inspect', image], { stdio: 'ignore' });
    if (inspected.status !== 0) continue;
    process.env[name] = image;
    chosen.push(image);
  }
  if (chosen.length === 0) return;
  console.log(`npm test: using the locally built images ${chosen.join(', ')} (scripts/images/local-images.env)`);
  // Testcontainers' reaper image cannot be pulled either; the suites remove their own containers
  // (every one carries the label postern.e2e).
  if (!process.env.TESTCONTAINERS_RYUK_DISABLED) {
    process.env.TESTCONTAINERS_RYUK_DISABLED = 'true';
    console.log('npm test: TESTCONTAINERS_RYUK_DISABLED=true (no reaper image without a registry)');
  }
}
useLocalImagesWhereBuilt();

const extraArgs = process.argv.slice(2);
let passed = 0;
let failed = 0;
const started = Date.now();

function step(title: string, command: string, args: string[]): boolean {
  const t0 = Date.now();
  console.log(`\n=== ${title}: ${command} ${args.join(' ')}`);
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit', env: process.env });
  const ok = result.status === 0;
  console.log(`=== ${title}: ${ok ? 'ok' : `FAILED (exit ${result.status ?? result.signal})`} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return ok;
}

const nx = path.join(root, 'node_modules', '.bin', 'nx');
const vitest = path.join(root, 'node_modules', '.bin', 'vitest');

for (const target of ['typecheck', 'lint']) {
  if (step(target, nx, ['run-many', '-t', target, '--outputStyle=static'])) passed += 1;
  else failed += 1;
}

const report = path.join(resultsDir, 'vitest.json');
step('unit + e2e tests', vitest, [
  'run',
  '--reporter=default',
  '--reporter=json',
  `--outputFile.json=${report}`,
  ...extraArgs,
]);
try {
  const json = JSON.parse(readFileSync(report, 'utf8')) as {
    numPassedTests: number;
    numFailedTests: number;
    numPendingTests: number;
    numTodoTests: number;
    success: boolean;
    testResults: Array<{ name: string; status: string; message?: string }>;
  };
  passed += json.numPassedTests;
  failed += json.numFailedTests;
  // A file that failed to load (syntax error, failed beforeAll) has no failed *tests*; count it.
  const brokenFiles = json.testResults.filter((file) => file.status === 'failed' && file.message);
  failed += brokenFiles.length;
  for (const file of brokenFiles) console.log(`broken test file: ${path.relative(root, file.name)}: ${file.message?.split('\n')[0]}`);
  if (!json.success && json.numFailedTests === 0 && brokenFiles.length === 0) failed += 1;
} catch (error) {
  console.log(`no vitest report (${(error as Error).message}): counting the test run as failed`);
  failed += 1;
}

writeFileSync(path.join(resultsDir, 'summary.json'), JSON.stringify({ passed, failed }));
console.log(`\nnpm test took ${((Date.now() - started) / 1000).toFixed(1)} s`);
console.log(`${passed} passed, ${failed} failed`);
process.exitCode = failed === 0 ? 0 : 1;
