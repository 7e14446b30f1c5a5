// Where one session's time goes, command by command: `-s 1` (one session at a time, a connection
// per message) is latency, not throughput, and its total hides which step is slow. This client
// opens one connection per message and times each reply from the moment the command that asked
// for it was written (the greeting from the connect, the 250 after DATA from the end of the
// message's bytes, the close from QUIT's reply), one session at a time, against each server in
// interleaved rounds, and prints the median of every step with Postern's difference to the others.
// Not a test: it prints figures and asserts nothing (docs/performance.md, "-s 1, step by step").
//
//   node bench/mta/step-latency.ts       [BENCH_SERVERS=postern,postfix,haraka BENCH_ROUNDS=3 BENCH_SESSIONS=1500]
//
// Each session is smtp-source's: EHLO, MAIL FROM, RCPT TO a numbered alias (a recipient and bytes
// of its own: aliases.ts), DATA, 2 KiB of message, QUIT. The first tenth of each round warms up and
// is not counted. The servers are the edge bench's own (servers/*.ts).
import net from 'node:net';
import os from 'node:os';
import { ALIAS_COUNT, ALIAS_DOMAIN, aliasLocalPart } from './aliases.ts';
import { benchMessage, percentile } from './load-client.ts';
import { startHaraka } from './servers/haraka.ts';
import { startPostern } from './servers/postern.ts';
import { startPostfix } from './servers/postfix.ts';
import type { BenchServer } from './servers/server.ts';
import { type BenchTools, ensureTools } from './tools.ts';

const STEPS = ['greeting', 'EHLO', 'MAIL', 'RCPT', 'DATA (354)', 'message (250)', 'QUIT (221)', 'close'] as const;
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const sessions = Number(process.env.BENCH_SESSIONS ?? 1500);
const serverNames = (process.env.BENCH_SERVERS ?? 'postern,postfix,haraka').split(',');
const starters: Record<string, (tools: BenchTools) => Promise<BenchServer>> = {
  postern: () => startPostern(),
  postfix: (tools) => startPostfix(tools),
  haraka: (tools) => startHaraka(tools),
};
const unknown = serverNames.filter((name) => !(name in starters));
if (unknown.length > 0) throw new Error(`unknown BENCH_SERVERS: ${unknown.join(', ')} (known: ${Object.keys(starters).join(', ')})`);
if (rounds * sessions > ALIAS_COUNT) throw new Error(`${rounds * sessions} sessions need as many aliases: raise BENCH_ALIASES or lower BENCH_SESSIONS`);

/** One session; resolves with the milliseconds of each step (STEPS), or rejects on an unexpected reply. */
function timedSession(port: number, recipient: string): Promise<number[]> {
  return new Promise((resolve, reject) => {
    const commands: Array<string | Buffer> = [
      'EHLO client.test\r\n',
      'MAIL FROM:<bench@client.test>\r\n',
      `RCPT TO:<${recipient}>\r\n`,
      'DATA\r\n',
      benchMessage(),
      'QUIT\r\n',
    ];
    const expected = ['220', '250', '250', '250', '354', '250', '221'];
    const times: number[] = [];
    let pending = '';
    let last = performance.now();
    const socket = net.connect(port, '127.0.0.1');
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      pending += chunk.toString('latin1');
      let end = pending.indexOf('\r\n');
      while (end >= 0) {
        const line = pending.slice(0, end);
        pending = pending.slice(end + 2);
        end = pending.indexOf('\r\n');
        if (line[3] === '-') continue;
        const now = performance.now();
        const step = times.length;
        times.push(now - last);
        last = now;
        if (!line.startsWith(expected[step] as string)) {
          socket.destroy();
          reject(new Error(`${STEPS[step]}: ${line}`));
          return;
        }
        const next = commands[step];
        if (next !== undefined) socket.write(next);
      }
    });
    socket.once('close', () => {
      times.push(performance.now() - last);
      if (times.length === STEPS.length) resolve(times);
      else reject(new Error(`the session ended after ${times.length} steps`));
    });
    socket.once('error', reject);
  });
}

const tools = await ensureTools();
const servers: BenchServer[] = [];
const stopAll = async () => {
  for (const server of servers.splice(0).reverse()) await server.stop().catch((error: unknown) => console.error(`stopping ${server.name}: ${String(error)}`));
};
process.once('SIGINT', () => void stopAll().finally(() => process.exit(130)));

try {
  for (const name of serverNames) servers.push(await (starters[name] as (tools: BenchTools) => Promise<BenchServer>)(tools));
  console.log(`one session at a time, ${sessions} per round and server, ${rounds} rounds; ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), Node ${process.version}`);
  /** server -> step -> the medians of the rounds */
  const medians = new Map(servers.map((server) => [server.name, STEPS.map(() => [] as number[])]));
  let alias = 1;
  for (let round = 1; round <= rounds; round++) {
    console.log(`round ${round}, load average ${os.loadavg().map((value) => value.toFixed(2)).join(' ')}`);
    for (const server of servers) {
      const measured: number[][] = [];
      for (let index = 0; index < sessions; index++) measured.push(await timedSession(server.port, `${aliasLocalPart(alias++)}@${ALIAS_DOMAIN}`));
      const counted = measured.slice(Math.floor(sessions / 10));
      const ofServer = medians.get(server.name) as number[][];
      STEPS.forEach((_, step) => {
        ofServer[step]?.push(percentile(counted.map((times) => times[step] as number), 50));
      });
      const total = percentile(counted.map((times) => times.reduce((sum, value) => sum + value, 0)), 50);
      console.log(`  ${server.name.padEnd(8)} session median ${total.toFixed(3)} ms`);
    }
  }
  const median = (values: number[]) => percentile(values, 50);
  const others = servers.filter((server) => server.name !== 'postern');
  const header = ['step', ...servers.map((server) => `${server.name} ms`), ...(medians.has('postern') ? others.map((server) => `postern − ${server.name}`) : [])];
  const rows = [...STEPS, 'sum of the steps'].map((step, index) => {
    const value = (name: string) => {
      const steps = medians.get(name) as number[][];
      return index < STEPS.length ? median(steps[index] as number[]) : steps.reduce((sum, values) => sum + median(values), 0);
    };
    const cells = servers.map((server) => value(server.name).toFixed(3));
    const differences = medians.has('postern') ? others.map((server) => (value('postern') - value(server.name)).toFixed(3)) : [];
    return [step, ...cells, ...differences];
  });
  console.log(`\nmedian of ${rounds} round medians, ms per step (from the command written to its reply):\n`);
  console.log(`| ${header.join(' | ')} |`);
  console.log(`| ${header.map((_, index) => (index === 0 ? '---' : '---:')).join(' | ')} |`);
  for (const row of rows) console.log(`| ${row.join(' | ')} |`);
} finally {
  await stopAll();
}
