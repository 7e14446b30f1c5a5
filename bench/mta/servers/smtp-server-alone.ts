// The protocol library alone in the benchmark: smtp-server (the edge's own, with this repository's
// patch) in one Node process with the edge's protocol options — no greeting delay, no reverse
// lookup, replies of a pipelined group in one write — the bench's aliases in a Set in memory (550
// for any other address, as Haraka's plugin), and each message read to its end and thrown away.
// No PostgreSQL, no logging, no metrics, nothing stored: what any edge built on this library costs
// on this machine before it does its own work, so the distance between it and Postern is the
// edge's own (docs/performance.md). The process itself: smtp-server-alone-process.ts.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BenchServer, freePort, stopChild, waitForPort } from './server.ts';

const script = path.join(path.dirname(fileURLToPath(import.meta.url)), 'smtp-server-alone-process.ts');

export async function startSmtpServerAlone(): Promise<BenchServer> {
  const port = await freePort();
  const child = spawn(process.execPath, [script, String(port)], { stdio: ['ignore', 'inherit', 'inherit'] });
  try {
    await waitForPort(port, 'smtp-server alone', () => child.exitCode === null);
  } catch (error) {
    await stopChild(child);
    throw error;
  }
  return {
    name: 'smtp-server',
    port,
    refusal: { port, code: 550 },
    ...(child.pid === undefined ? {} : { pid: child.pid }),
    stop: () => stopChild(child),
  };
}
