// RCPT latency under another client's load: while smtp-source drives a server, this probe holds one
// session of its own and, a few times per second, sends MAIL FROM, RCPT TO a random alias and RSET,
// timing the RCPT from its write to its reply. It runs in a process of its own so that the figure is
// the server's, not the event loop of the bench's own client (the Node load client's RCPT times
// include its 20 busy sessions). Postfix and Haraka are probed the same way, for reference.
// It starts a new session every SESSION_TRANSACTIONS transactions: Postfix counts RSET as a junk
// command and, after smtpd_junk_command_limit (100) of them in a session without mail delivered,
// counts each one as an error; past smtpd_soft_error_limit (10) errors it waits smtpd_error_sleep_time
// (1 s) before every reply, and at smtpd_hard_error_limit (20) it ends the session. A probe that kept
// one session for a round measured that penalty once the round was longer than about two seconds
// (Postfix's RCPT p99 read about 1,008 ms), not Postfix.
//   startRcptProbe(port) in the bench;  node bench/mta/rcpt-probe.ts <port> <per second> as the child.
import { type ChildProcess, spawn } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { randomRecipient } from './aliases.ts';

export interface ProbeResult {
  /** Every RCPT's time, in the order sent: the caller takes its percentiles, per round and over all rounds. */
  timesMs: number[];
  /** Replies other than 250 to MAIL/RCPT/RSET, or a broken session. */
  problem: string | null;
}

const PER_SECOND = 50;
/** Transactions (each ended by RSET) per session: below Postfix's junk command limit of 100. */
const SESSION_TRANSACTIONS = 50;

export interface RcptProbe {
  stop(): Promise<ProbeResult>;
}

/** Starts the probe against 127.0.0.1:port; stop() ends it and returns what it measured. */
export function startRcptProbe(port: number, perSecond = PER_SECOND): RcptProbe {
  const child: ChildProcess = spawn(process.execPath, [fileURLToPath(import.meta.url), String(port), String(perSecond)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  let output = '';
  child.stdout?.setEncoding('utf8').on('data', (data: string) => {
    output += data;
  });
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  return {
    async stop() {
      // End of its stdin is the signal to stop and print.
      child.stdin?.end();
      await exited;
      try {
        return JSON.parse(output) as ProbeResult;
      } catch {
        return { timesMs: [], problem: `probe printed no figures: ${output.slice(0, 200)}` };
      }
    },
  };
}

/** One SMTP session: send a line, resolve with the (last line of the) reply. */
function session(port: number): Promise<{ command(line: string): Promise<string>; close(): void }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.setNoDelay(true);
    let buffer = '';
    let waiting: ((reply: string) => void) | null = null;
    socket.setEncoding('utf8');
    socket.on('data', (data: string) => {
      buffer += data;
      for (;;) {
        const end = buffer.indexOf('\r\n');
        if (end === -1) return;
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        // A multi-line reply ends at its line with a space after the code.
        if (line[3] === '-') continue;
        const resolveReply = waiting;
        waiting = null;
        resolveReply?.(line);
      }
    });
    socket.once('error', reject);
    const api = {
      command(line: string) {
        return new Promise<string>((resolveReply) => {
          waiting = resolveReply;
          if (line) socket.write(`${line}\r\n`);
        });
      },
      close: () => socket.destroy(),
    };
    waiting = () => resolve(api);
  });
}

async function probe(port: number, perSecond: number): Promise<ProbeResult> {
  let running = true;
  process.stdin.on('end', () => {
    running = false;
  });
  process.stdin.resume();
  const times: number[] = [];
  let problem: string | null = null;
  let smtp: Awaited<ReturnType<typeof session>> | null = null;
  let transactions = 0;
  const gap = 1000 / perSecond;
  while (running && problem === null) {
    const next = performance.now() + gap;
    if (smtp === null || transactions === SESSION_TRANSACTIONS) {
      if (smtp !== null) {
        await smtp.command('QUIT');
        smtp.close();
      }
      smtp = await session(port);
      transactions = 0;
      const ehlo = await smtp.command('EHLO probe.client.test');
      if (!ehlo.startsWith('250')) {
        problem = `EHLO: ${ehlo}`;
        break;
      }
    }
    transactions += 1;
    const mail = await smtp.command('MAIL FROM:<probe@client.test>');
    const started = performance.now();
    const rcpt = await smtp.command(`RCPT TO:<${randomRecipient()}>`);
    times.push(performance.now() - started);
    const rset = await smtp.command('RSET');
    if (!mail.startsWith('250') || !rcpt.startsWith('250') || !rset.startsWith('250')) problem = `replies: ${mail} / ${rcpt} / ${rset}`;
    const wait = next - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  }
  smtp?.close();
  return { timesMs: times, problem };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [port, perSecond] = process.argv.slice(2).map(Number);
  probe(port as number, perSecond || PER_SECOND).then(
    (result) => process.stdout.write(JSON.stringify(result)),
    (error: unknown) => process.stdout.write(JSON.stringify({ timesMs: [], problem: String(error) })),
  );
}
