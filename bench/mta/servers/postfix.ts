// Postfix in the benchmark: a private instance of Debian's Postfix, configured by the bench under a
// temporary directory (its own config_directory, queue_directory and data_directory, its own port;
// the machine's own Postfix, if any, is not touched). It does what a Postfix MX does with such mail:
// the recipient is checked against a virtual alias table (hash:, the same aliases as Postern's) at
// RCPT time, the message is written to its queue file and fsync'ed before the 250 (Postfix's
// default), then the queue manager hands it to the discard transport. Needs root (Postfix's master
// starts as root and drops to the postfix user). Logging goes to syslog, Postfix's default; with
// BENCH_POSTFIX_LOG=1 to a file in the temporary directory, kept and named at the end.
//
// One setting differs from Postfix's defaults: in_flow_delay = 0, no flow control. With its default
// (1s), when mail arrives faster than the queue manager hands it to discard, smtpd waits up to a
// second for a token before opening the next queue file (at the first accepted RCPT): the RCPT
// probe's p99 then reads about 1,005 ms, and in some runs Postfix's rate fell with it (641/s where
// the runs around it had 806-966). That is pacing to the delivery rate, not the work of accepting;
// Postern's edge in this bench has no delivery to pace to, so each server is measured at what it
// can accept. BENCH_POSTFIX_MAIN_CF adds main.cf lines (separated by ";") after the bench's own,
// e.g. "in_flow_delay = 1s" to measure Postfix's default. Between rounds the bench waits for the
// queue to empty (settle), so one round's deliveries never run during another server's round.
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ALIAS_COUNT, ALIAS_DOMAIN, aliasLines } from '../aliases.ts';
import type { BenchTools } from '../tools.ts';
import { type BenchServer, fileSystemOf, freePort, waitForPort } from './server.ts';

/** What the instance needs of Debian's /etc/postfix besides main.cf (master.cf is adapted below). */
const COPIED = ['master.cf', 'dynamicmaps.cf', 'dynamicmaps.cf.d', 'postfix-files', 'postfix-files.d'];

function mainCf(base: string, log: boolean, extra: readonly string[]): string {
  return `${[
    'compatibility_level = 3.6',
    `queue_directory = ${base}/spool`,
    `data_directory = ${base}/data`,
    'mail_owner = postfix',
    'setgid_group = postdrop',
    'syslog_name = postfix-bench',
    'myhostname = mx.bench.test',
    'mydestination =',
    'inet_interfaces = 127.0.0.1',
    'inet_protocols = ipv4',
    'mynetworks = 127.0.0.0/8',
    'alias_maps =',
    'alias_database =',
    'local_recipient_maps =',
    `virtual_alias_domains = ${ALIAS_DOMAIN}`,
    `virtual_alias_maps = hash:${base}/etc/virtual`,
    // Accepted into the queue (fsync'ed), then thrown away by the delivery agent.
    'default_transport = discard:bench',
    'relay_transport = discard:bench',
    'local_transport = discard:bench',
    'biff = no',
    // What it can accept, not its pacing to the delivery rate (above).
    'in_flow_delay = 0',
    ...extra,
    ...(log ? [`maillog_file = ${base}/maillog`, `maillog_file_prefixes = ${base}`] : []),
  ].join('\n')}\n`;
}

/** BENCH_POSTFIX_MAIN_CF: main.cf lines separated by ";" (a later line overrides an earlier one). */
function extraMainCf(): string[] {
  return (process.env.BENCH_POSTFIX_MAIN_CF ?? '')
    .split(';')
    .map((line) => line.trim())
    .filter((line) => line !== '');
}

/** Messages in the queue not yet handed to discard: files in incoming, active and maildrop. */
function queuedFiles(spool: string): number {
  let count = 0;
  for (const queue of ['maildrop', 'incoming', 'active']) {
    try {
      count += readdirSync(path.join(spool, queue), { recursive: true, withFileTypes: true }).filter((entry) => entry.isFile()).length;
    } catch {
      // Not created yet: nothing queued there.
    }
  }
  return count;
}

export async function startPostfix(tools: BenchTools): Promise<BenchServer> {
  const base = mkdtempSync(path.join(os.tmpdir(), 'postern-bench-postfix-'));
  // The postfix user reaches the queue through it.
  chmodSync(base, 0o755);
  const etc = path.join(base, 'etc');
  const log = process.env.BENCH_POSTFIX_LOG === '1';
  const postfix = (...args: string[]) => execFileSync(tools.postfix, ['-c', etc, ...args], { stdio: 'pipe' });
  const postconf = (...args: string[]) => execFileSync(tools.postconf, ['-c', etc, ...args], { stdio: 'pipe' });
  let started = false;
  try {
    mkdirSync(etc);
    mkdirSync(path.join(base, 'spool'));
    mkdirSync(path.join(base, 'data'));
    const postfixUser = Number(execFileSync('id', ['-u', 'postfix'], { encoding: 'utf8' }).trim());
    chownSync(path.join(base, 'data'), postfixUser, 0);
    for (const name of COPIED) {
      if (existsSync(path.join('/etc/postfix', name))) cpSync(path.join('/etc/postfix', name), path.join(etc, name), { recursive: true });
    }
    const extra = extraMainCf();
    writeFileSync(path.join(etc, 'main.cf'), mainCf(base, log, extra));
    writeFileSync(path.join(etc, 'virtual'), aliasLines(true));
    execFileSync(tools.postmap, ['-c', etc, path.join(etc, 'virtual')], { stdio: 'pipe' });
    const port = await freePort();
    // Its own listener instead of port 25, and no chroot (the chroot would need a copy of /etc).
    postconf('-M#', 'smtp/inet');
    postconf('-M', `127.0.0.1:${port}/inet = 127.0.0.1:${port} inet n - n - - smtpd`);
    postconf('-F', '*/*/chroot = n');
    postfix('check');
    postfix('start');
    console.log(
      `postfix: private instance in ${base} (queue on ${fileSystemOf(base)}), ${ALIAS_COUNT} aliases, in_flow_delay = 0${extra.length > 0 ? `, then BENCH_POSTFIX_MAIN_CF: ${extra.join('; ')}` : ''}`,
    );
    started = true;
    await waitForPort(port, 'postfix');
    return {
      name: 'postfix',
      port,
      refusal: { port, code: 550 },
      async settle() {
        const spool = path.join(base, 'spool');
        const deadline = Date.now() + 120_000;
        while (queuedFiles(spool) > 0) {
          if (Date.now() > deadline) throw new Error(`postfix: ${queuedFiles(spool)} messages still queued after 120 s`);
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      },
      async stop() {
        postfix('stop');
        await waitForMasterExit(base);
        if (log) console.log(`postfix log kept: ${base}/maillog`);
        else rmSync(base, { recursive: true, force: true });
      },
    };
  } catch (error) {
    if (started) postfix('abort');
    if (!log) rmSync(base, { recursive: true, force: true });
    throw error;
  }
}

/** `postfix stop` only signals the master; the queue is removed once it and its children are gone. */
async function waitForMasterExit(base: string): Promise<void> {
  const pidFile = path.join(base, 'spool', 'pid', 'master.pid');
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    let pid = Number.NaN;
    try {
      pid = Number(readFileSync(pidFile, 'utf8').trim());
    } catch {
      return;
    }
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
