// Postfix's smtp-sink in the benchmark: the SMTP exchange alone, nothing checked or stored — the
// ceiling the machine allows the clients, not a server to compare with. Two processes: one accepts
// every recipient (the message modes), the other refuses every RCPT (-f RCPT: "500 5.3.0 Error:
// command failed") for the reject path's ceiling.
import { type ChildProcess, spawn } from 'node:child_process';
import type { BenchTools } from '../tools.ts';
import { type BenchServer, freePort, stopChild, waitForPort } from './server.ts';

async function startSink(tools: BenchTools, options: string[]): Promise<{ port: number; sink: ChildProcess }> {
  const port = await freePort();
  const sink = spawn(tools.smtpSink, ['-u', 'nobody', ...options, `127.0.0.1:${port}`, '1024'], { stdio: 'ignore' });
  try {
    await waitForPort(port, 'smtp-sink', () => sink.exitCode === null);
  } catch (error) {
    await stopChild(sink);
    throw error;
  }
  return { port, sink };
}

export async function startSmtpSink(tools: BenchTools): Promise<BenchServer> {
  const accepting = await startSink(tools, []);
  let refusing: { port: number; sink: ChildProcess };
  try {
    refusing = await startSink(tools, ['-f', 'RCPT']);
  } catch (error) {
    await stopChild(accepting.sink);
    throw error;
  }
  return {
    name: 'smtp-sink',
    port: accepting.port,
    refusal: { port: refusing.port, code: 500, ...(refusing.sink.pid === undefined ? {} : { pid: refusing.sink.pid }) },
    ...(accepting.sink.pid === undefined ? {} : { pid: accepting.sink.pid }),
    async stop() {
      await stopChild(refusing.sink);
      await stopChild(accepting.sink);
    },
  };
}
