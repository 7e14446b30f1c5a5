// The raw-socket relay of raw-relay.py, run as a child process: a peer written without any SMTP
// library, so that it can say what nodemailer's and smtp-server's own servers never would.
import { type ChildProcess, spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';

const SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'raw-relay.py');

export interface RawRelayStats {
  /** Messages read after DATA, by Message-ID. */
  received: Record<string, number>;
  /** Messages answered with a reply starting with 2 after the dot, by Message-ID. */
  accepted: Record<string, number>;
  connections: number;
}

export interface RawRelay {
  host: string;
  port: number;
  stats(): Promise<RawRelayStats>;
  /** The behaviour of sessions opened from now on (greet421, greet554, ehlohang, ehlo550, starttlshang, starttlsjunk, normal). */
  setMode(mode: string): Promise<void>;
  close(): Promise<void>;
}

/** The Message-ID the engine sent a delivery with, as the relay counts it (stats' keys). */
export async function messageIdOf(pool: pg.Pool, deliveryId: string): Promise<string> {
  const { rows } = await pool.query<{ raw: Buffer }>(
    'SELECT p.raw FROM mail.deliveries d JOIN mail.message_payloads p ON p.message_id = d.message_id WHERE d.id = $1',
    [deliveryId],
  );
  const head = (rows[0] as { raw: Buffer }).raw.toString('latin1').split('\r\n\r\n')[0] ?? '';
  return /^Message-ID:[ \t]*(.*)$/im.exec(head)?.[1]?.trim() ?? '(none)';
}

function ask(port: number, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let answer = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      answer += chunk;
    });
    socket.on('end', () => resolve(answer.trim()));
    socket.on('error', reject);
    socket.write(`${line}\n`);
  });
}

export async function startRawRelay(): Promise<RawRelay> {
  const child: ChildProcess = spawn('python3', [SCRIPT], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [smtpPort, controlPort] = await new Promise<[number, number]>((resolve, reject) => {
    let out = '';
    child.once('exit', (code) => reject(new Error(`raw-relay.py exited with ${code}`)));
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const match = /PORTS (\d+) (\d+)/.exec(out);
      if (match) resolve([Number(match[1]), Number(match[2])]);
    });
  });
  return {
    host: '127.0.0.1',
    port: smtpPort,
    stats: async () => JSON.parse(await ask(controlPort, 'STATS')) as RawRelayStats,
    setMode: async (mode) => {
      if ((await ask(controlPort, `MODE ${mode}`)) !== 'ok') throw new Error(`raw relay refused mode ${mode}`);
    },
    close: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGKILL');
      }),
  };
}
