// Postfix's smtp-sink in the benchmark: the SMTP exchange alone, nothing checked or stored — the
// ceiling the machine allows the clients, not a server to compare with. It accepts any recipient,
// so it has no reject-path figure.
import { spawn } from 'node:child_process';
import type { BenchTools } from '../tools.ts';
import { type BenchServer, freePort, stopChild, waitForPort } from './server.ts';

export async function startSmtpSink(tools: BenchTools): Promise<BenchServer> {
  const port = await freePort();
  const sink = spawn(tools.smtpSink, ['-u', 'nobody', `127.0.0.1:${port}`, '1024'], { stdio: 'ignore' });
  try {
    await waitForPort(port, 'smtp-sink', () => sink.exitCode === null);
  } catch (error) {
    await stopChild(sink);
    throw error;
  }
  return {
    name: 'smtp-sink',
    port,
    refusesUnknown: false,
    ...(sink.pid === undefined ? {} : { pid: sink.pid }),
    stop: () => stopChild(sink),
  };
}
