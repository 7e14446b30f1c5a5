// Postfix's smtp-sink as the relay of the core bench's smtp mode: the SMTP exchange alone, answered
// by a small C server that stores nothing, so the figure is the engine's and not a receiver's.
// It comes with Debian's postfix package; the bench installs that when the binary is missing.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';

const SMTP_SINK = process.env.BENCH_SMTP_SINK ?? '/usr/sbin/smtp-sink';

function ensureInstalled(): void {
  if (existsSync(SMTP_SINK)) return;
  if (process.getuid?.() !== 0) throw new Error(`${SMTP_SINK} is missing: install Debian's postfix package (apt-get install postfix)`);
  console.log(`# ${SMTP_SINK} is missing: installing postfix with apt-get`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update'], { stdio: 'inherit', env });
  execFileSync('apt-get', ['install', '-y', '--no-install-recommends', 'postfix'], { stdio: 'inherit', env });
}

async function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export interface SmtpSink {
  addr: string;
  stop(): Promise<void>;
}

/** smtp-sink on 127.0.0.1:port (backlog 1024), once it accepts connections. */
export async function startSmtpSink(port: number): Promise<SmtpSink> {
  ensureInstalled();
  // As root it must be told whom to run as.
  const args = [...(process.getuid?.() === 0 ? ['-u', 'postgres'] : []), `127.0.0.1:${port}`, '1024'];
  const child: ChildProcess = spawn(SMTP_SINK, args, { stdio: 'ignore' });
  const deadline = Date.now() + 10_000;
  while (!(await accepts(port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGTERM');
      throw new Error(`smtp-sink did not listen on 127.0.0.1:${port} (exit code ${child.exitCode})`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    addr: `127.0.0.1:${port}`,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
  };
}
