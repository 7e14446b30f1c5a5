// The topology suite tests the Postern image, so that image must hold this tree, not an older one.
// `npm run image -- --check` compares the image's input hash with the tree's. Under CI the image is
// built by .ci/run before the tests, and a missing or stale one fails the suite loudly; on a
// workstation the suite builds it (a minute or two, once per change). An image named by
// POSTERN_IMAGE is taken as it is: whoever names one chose it.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { images } from '../../harness/images.ts';

const run = promisify(execFile);
const REPO_ROOT = path.resolve(import.meta.dirname, '..', '..', '..');
const BUILD_SCRIPT = path.join(REPO_ROOT, 'scripts', 'images', 'build-postern-image.sh');

function output(error: unknown): string {
  const failed = error as { stdout?: string; stderr?: string; message: string };
  return `${failed.stdout ?? ''}${failed.stderr ?? ''}`.trim() || failed.message;
}

/** Resolves with the image to run once it holds this tree; throws saying what to do otherwise. */
export async function ensurePosternImage(): Promise<string> {
  if (process.env.POSTERN_IMAGE) {
    await run('docker', ['image', 'inspect', images.postern]).catch(() => {
      throw new Error(`POSTERN_IMAGE=${images.postern} is not in the Docker store`);
    });
    return images.postern;
  }
  try {
    await run('bash', [BUILD_SCRIPT, '--check'], { cwd: REPO_ROOT });
    return images.postern;
  } catch (error) {
    const why = output(error);
    if (process.env.CI && !['0', 'false'].includes(process.env.CI)) {
      throw new Error(`e2e/topology: ${why}. CI builds the image before the tests (.ci/run: npm run image), so here it must exist and hold this tree.`);
    }
    console.log(`[topology] ${why}; building it now (npm run image)`);
  }
  const t0 = Date.now();
  try {
    await run('bash', [BUILD_SCRIPT], { cwd: REPO_ROOT, maxBuffer: 64 * 1024 * 1024 });
  } catch (error) {
    throw new Error(`e2e/topology: npm run image failed: ${output(error)}`);
  }
  console.log(`[topology] built ${images.postern} in ${Math.round((Date.now() - t0) / 1000)} s`);
  return images.postern;
}
