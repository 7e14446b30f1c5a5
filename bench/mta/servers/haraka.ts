// Haraka in the benchmark: the npm package the bench installed into its cache (tools.ts), run as ONE
// process (smtp.ini nodes=0: no cluster), from a throwaway directory the bench writes: the plugins
// rcpt_bench_aliases (the same aliases as Postern's, 550 for any other address; haraka/) and
// queue/discard (accepted messages are thrown away: it stores nothing), logging at warn as Postern.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { aliasLines } from '../aliases.ts';
import type { BenchTools } from '../tools.ts';
import { type BenchServer, freePort, stopChild, waitForPort } from './server.ts';

const plugin = path.join(path.dirname(fileURLToPath(import.meta.url)), '../haraka/rcpt_bench_aliases.js');

export async function startHaraka(tools: BenchTools): Promise<BenchServer> {
  const base = mkdtempSync(path.join(os.tmpdir(), 'postern-bench-haraka-'));
  let child: ChildProcess | undefined;
  try {
    // Haraka's own installer writes the directory with its defaults (connection.ini etc.); the
    // files below replace what the benchmark sets.
    execFileSync(process.execPath, [tools.harakaBin, '-i', base], { stdio: 'ignore' });
    const config = path.join(base, 'config');
    cpSync(plugin, path.join(base, 'plugins', 'rcpt_bench_aliases.js'));
    const port = await freePort();
    writeFileSync(path.join(config, 'smtp.ini'), `listen=127.0.0.1:${port}\nnodes=0\n`);
    writeFileSync(path.join(config, 'plugins'), 'rcpt_bench_aliases\nqueue/discard\n');
    writeFileSync(path.join(config, 'log.ini'), '[main]\nlevel=warn\n');
    writeFileSync(path.join(config, 'me'), 'mx.bench.test\n');
    writeFileSync(path.join(config, 'bench_aliases'), aliasLines(false));
    const haraka = spawn(process.execPath, [tools.harakaBin, '-c', base], {
      // queue/discard throws messages away only when told to.
      env: { PATH: process.env.PATH, YES_REALLY_DO_DISCARD: '1' },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    child = haraka;
    await waitForPort(port, 'haraka', () => haraka.exitCode === null);
    return {
      name: 'haraka',
      port,
      refusal: { port, code: 550 },
      ...(haraka.pid === undefined ? {} : { pid: haraka.pid }),
      async stop() {
        await stopChild(haraka);
        rmSync(base, { recursive: true, force: true });
      },
    };
  } catch (error) {
    if (child) await stopChild(child);
    rmSync(base, { recursive: true, force: true });
    throw error;
  }
}
