// Hostile SMTP sessions for the raw-socket fuzzer (e2e/mta/raw-socket-fuzz.e2e.test.ts): a plan
// (bytes to send, how to cut them, how the client leaves) generated from a seed, a runner that
// plays it on a raw socket and keeps every byte the server wrote, and a checker for what RFC 5321
// lets a server write back. Every message body carries an X-Fuzz-Tag header naming its session,
// so a stored row can be traced to the session that sent it.
import net from 'node:net';
import fc from 'fast-check';
import { cutAt } from '../../../apps/mta/src/data/cut-at.ts';

/** How the client leaves: politely, half-closed (FIN, then keeps reading), or gone without a word. */
export type Ending = 'quit' | 'half-close' | 'vanish' | 'vanish-mid-data';
/** How the bytes are written: at once, one byte per write, cut at random places, or one step per reply. */
export type WriteMode = 'pipelined' | 'every-byte' | 'random-cuts' | 'lockstep';

export interface SessionPlan {
  index: number;
  steps: Buffer[];
  mode: WriteMode;
  cuts: number[];
  ending: Ending;
}

export interface SessionRun {
  plan: SessionPlan;
  received: Buffer;
  /** The server closed (FIN) while we were still reading: every reply it meant to send was seen. */
  serverClosed: boolean;
  /** We cut the connection before seeing the server's close: replies may be missing. */
  abandoned: boolean;
}

const CRLF = '\r\n';

function lineFor(index: number) {
  const helo = `fuzz-${index}.test`;
  const junk = fc
    .array(fc.oneof(fc.integer({ min: 0, max: 255 }).filter((b) => b !== 10 && b !== 13), fc.constantFrom(0x00, 0x3a, 0x3c, 0x3e, 0x40, 0x20)), { maxLength: 60 })
    .map((bytes) => Buffer.from(bytes).toString('latin1'));
  return fc.oneof(
    fc.constantFrom(
      `EHLO ${helo}`, `HELO ${helo}`, 'EHLO', 'EHLO [127.0.0.1]', `EHLO ${'h'.repeat(300)}.test`,
      `MAIL FROM:<s${index}@outside.test>`, `MAIL FROM:<s${index}@outside.test> BODY=8BITMIME`, `MAIL FROM:<s${index}@outside.test> SMTPUTF8`,
      'MAIL FROM:<üser@bücher.test> SMTPUTF8', 'MAIL FROM:<>', 'MAIL FROM:<s@outside.test> SIZE=999999999', 'MAIL FROM:<s@outside.test> BODY=BINARYMIME',
      'MAIL FROM: <s@outside.test>', `MAIL FROM:<${'a'.repeat(400)}@outside.test>`, 'MAIL FROM:s@outside.test', 'MAIL FROM:<s@[300.1.1.1]>',
      'RCPT TO:<one@postern.test>', 'RCPT TO:<ONE@Postern.Test>', 'RCPT TO:<nobody@postern.test>', 'RCPT TO:<x@elsewhere.test>',
      'RCPT TO:<one@postern.test> NOTIFY=NEVER', 'RCPT TO:<"one"@postern.test>', 'RCPT TO:<@relay.test:one@postern.test>', 'RCPT TO:<postmaster>',
      'RCPT TO:<one\u0000@postern.test>', 'RCPT TO:<one@postern.test\u00ff>', 'RCPT TO:<üñí@postern.test>',
      'DATA', 'BDAT 5 LAST', 'RSET', 'NOOP', 'VRFY one', 'EXPN team', 'HELP', 'STARTTLS', 'AUTH PLAIN AGFhAGI=', 'XCLIENT ADDR=10.0.0.1',
      'TURN', 'ETRN postern.test', 'QUIT', '', ' ', '\u0000', 'MAIL', 'RCPT', 'DATA DATA', '.', '..',
    ),
    junk,
    fc.constant(`NOOP ${'x'.repeat(20_000)}`),
  ).map((text) => Buffer.from(`${text}${CRLF}`, 'latin1'));
}

function messageFor(index: number, tag: () => string) {
  const variants = fc.constantFrom(
    'plain', 'dot-lines', 'eight-bit', 'nul', 'bare-lf', 'smuggling', 'oversize', 'long-line', 'hops', 'empty-body', 'cut',
  );
  return variants.map((variant) => {
    const header = `X-Fuzz-Tag: ${tag()}\r\nFrom: <s${index}@outside.test>\r\nSubject: fuzz ${variant}\r\n\r\n`;
    const body = ((): string => {
      switch (variant) {
        case 'plain':
          return 'hello\r\n';
        case 'dot-lines':
          return '..stuffed\r\n...\r\n.. \r\n';
        case 'eight-bit':
          return 'Gr\u00fc\u00dfe \u00ff\u0080\r\n';
        case 'nul':
          return 'a\u0000b\r\n';
        case 'bare-lf':
          return 'one\ntwo\r\n';
        case 'smuggling':
          return 'x\n.\r\nMAIL FROM:<admin@victim.test>\r\nRCPT TO:<one@postern.test>\r\nDATA\r\nsmuggled\r\n';
        case 'oversize':
          return `${'y'.repeat(998)}\r\n`.repeat(70);
        case 'long-line':
          return `${'z'.repeat(5000)}\r\n`;
        case 'hops':
          return '';
        case 'empty-body':
          return '';
        default:
          return 'no terminator follows';
      }
    })();
    const hops = variant === 'hops' ? 'Received: from a by b; Thu, 1 Jan 2026 00:00:00 +0000\r\n'.repeat(120) : '';
    const text = `${hops}${header}${body}`;
    const end = variant === 'cut' ? '' : '.\r\n';
    return Buffer.from(`${text.replace(/(^|\r\n)\./g, '$1..')}${end}`, 'latin1');
  });
}

export function sessionPlans(seed: number, count: number): SessionPlan[] {
  const plans: SessionPlan[] = [];
  for (let index = 0; index < count; index++) {
    let messages = 0;
    const tag = () => `s${index}m${messages++}`;
    const transaction = fc
      .tuple(fc.constantFrom(`EHLO fuzz-${index}.test`, `HELO fuzz-${index}.test`), fc.integer({ min: 1, max: 3 }), messageFor(index, tag))
      .map(([greeting, rcpts, message]) => [
        Buffer.from(`${greeting}\r\nMAIL FROM:<s${index}@outside.test>\r\n`),
        ...Array.from({ length: rcpts }, (_, i) => Buffer.from(i === 1 ? 'RCPT TO:<nobody@postern.test>\r\n' : 'RCPT TO:<one@postern.test>\r\n')),
        Buffer.from('DATA\r\n'),
        message,
      ]);
    const randomBytes = fc
      .uint8Array({ minLength: 1, maxLength: 200 })
      .map((bytes) => [Buffer.from(bytes)]);
    const step = fc.oneof(
      { weight: 4, arbitrary: transaction },
      { weight: 5, arbitrary: lineFor(index).map((line) => [line]) },
      { weight: 1, arbitrary: randomBytes },
      { weight: 1, arbitrary: messageFor(index, tag).map((message) => [message]) },
    );
    const plan = fc.record({
      steps: fc.array(step, { minLength: 1, maxLength: 8 }).map((groups) => groups.flat()),
      mode: fc.constantFrom<WriteMode>('pipelined', 'every-byte', 'random-cuts', 'lockstep'),
      cuts: fc.array(fc.nat(), { maxLength: 12 }),
      ending: fc.constantFrom<Ending>('quit', 'quit', 'half-close', 'half-close', 'vanish', 'vanish-mid-data'),
    });
    // One sample per session, each from its own seed: plan N does not change when N+1 is added,
    // and two suite seeds share no session (seed + index alone would shift one run into the next).
    const [sampled] = fc.sample(plan, { seed: (seed * 1_000_003 + index) | 0, numRuns: 1 });
    if (!sampled) throw new Error('fast-check produced no plan');
    plans.push({ index, ...sampled });
  }
  return plans;
}

/** Plays a plan on a raw socket. Never throws for what the server does; every wait has a deadline. */
export async function runSession(port: number, plan: SessionPlan, deadlineMs: number): Promise<SessionRun> {
  const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  const received: Buffer[] = [];
  let serverClosed = false;
  let abandoned = false;
  const changed = new Set<() => void>();
  const notify = () => {
    for (const wake of changed) wake();
  };
  /** Complete replies so far (their last line "ddd " ends with CRLF). */
  let replies = 0;
  let partial = '';
  socket.on('data', (chunk: Buffer) => {
    received.push(chunk);
    const lines = `${partial}${chunk.toString('latin1')}`.split('\r\n');
    partial = lines.pop() ?? '';
    replies += lines.filter((line) => /^\d{3}(?: |$)/.test(line)).length;
    notify();
  });
  socket.on('end', () => {
    serverClosed = true;
    notify();
  });
  socket.on('close', () => {
    serverClosed = true;
    notify();
  });
  socket.on('error', () => {
    // ECONNRESET, EPIPE: the server may close while we still write; what it wrote is what counts.
  });
  const until = (condition: () => boolean, ms: number) =>
    new Promise<boolean>((resolve) => {
      if (condition()) return resolve(true);
      const wake = () => {
        if (!condition()) return;
        finish(true);
      };
      const timer = setTimeout(() => finish(condition()), ms);
      const finish = (value: boolean) => {
        clearTimeout(timer);
        changed.delete(wake);
        resolve(value);
      };
      changed.add(wake);
    });
  const write = (bytes: Buffer) =>
    new Promise<void>((resolve) => {
      if (socket.destroyed || !socket.writable || serverClosed) return resolve();
      socket.write(bytes, () => resolve());
    });
  const started = Date.now();
  const left = () => Math.max(0, deadlineMs - (Date.now() - started));

  const connected = await new Promise<boolean>((resolve) => {
    socket.once('connect', () => resolve(true));
    socket.once('error', () => resolve(false));
  });
  if (!connected) return { plan, received: Buffer.alloc(0), serverClosed: true, abandoned: true };
  await until(() => replies > 0 || serverClosed, Math.min(5_000, left()));

  let steps = plan.steps;
  if (plan.ending === 'vanish-mid-data') {
    // Open a transaction and leave halfway through the message: nothing of it may be stored.
    steps = [...steps, Buffer.from(`EHLO fuzz-${plan.index}.test\r\nMAIL FROM:<s${plan.index}@outside.test>\r\nRCPT TO:<one@postern.test>\r\nDATA\r\n`)];
  }
  const all = Buffer.concat(steps);
  if (plan.mode === 'pipelined') await write(all);
  else if (plan.mode === 'every-byte') {
    // One byte per write; long plans fall back to random cuts to stay within the deadline.
    const chunks = all.length <= 4_096 ? Array.from({ length: all.length }, (_, i) => all.subarray(i, i + 1)) : cutAt(all, plan.cuts);
    for (const chunk of chunks) await write(chunk);
  } else if (plan.mode === 'random-cuts') {
    for (const chunk of cutAt(all, plan.cuts)) await write(chunk);
  } else {
    for (const step of steps) {
      const before = replies;
      await write(step);
      // A reply (or the server going away) before the next step; a step inside DATA gets none.
      await until(() => replies > before || serverClosed, Math.min(2_000, left()));
    }
  }

  if (plan.ending === 'vanish-mid-data') {
    // Wait for the 354 (if the session got that far), send half a message, and go without a word.
    await until(() => Buffer.concat(received).includes('354 ') || serverClosed, Math.min(3_000, left()));
    await write(Buffer.from(`X-Fuzz-Tag: s${plan.index}cut\r\nSubject: never finished\r\n\r\nhalf a mess`));
    abandoned = !serverClosed;
    socket.destroy();
  } else if (plan.ending === 'vanish') {
    abandoned = !serverClosed;
    socket.resetAndDestroy();
  } else {
    if (plan.ending === 'quit') await write(Buffer.from('QUIT\r\n'));
    else socket.end();
    // Keep reading after our FIN (half-close) or our QUIT until the server closes its side.
    await until(() => serverClosed, left());
    abandoned = !serverClosed;
    socket.destroy();
  }
  return { plan, received: Buffer.concat(received), serverClosed, abandoned };
}

export interface ParsedReply {
  code: number;
  lines: string[];
}

/**
 * The replies in what a server wrote, and every way it breaks RFC 5321 4.2: a line that is not
 * "ddd[ -]text" in printable ASCII, a multi-line reply whose codes differ, bytes after the last
 * CRLF (a partial line) when the whole session was seen.
 */
export function parseReplies(received: Buffer, complete: boolean): { replies: ParsedReply[]; problems: string[] } {
  const text = received.toString('latin1');
  const problems: string[] = [];
  const parts = text.split('\r\n');
  const tail = parts.pop() ?? '';
  if (tail !== '' && complete) problems.push(`bytes after the last CRLF: ${JSON.stringify(tail.slice(0, 80))}`);
  const replies: ParsedReply[] = [];
  let current: ParsedReply | null = null;
  for (const line of parts) {
    const match = /^([2-5][0-5]\d)([ -])([\t\x20-\x7e]*)$/.exec(line);
    if (!match) {
      problems.push(`not an SMTP reply line: ${JSON.stringify(line.slice(0, 120))}`);
      current = null;
      continue;
    }
    const code = Number(match[1]);
    if (current && current.code !== code) problems.push(`multi-line reply changes code ${current.code} -> ${code}: ${JSON.stringify(line.slice(0, 80))}`);
    if (!current) current = { code, lines: [] };
    current.lines.push(line);
    if (match[2] === ' ') {
      replies.push(current);
      current = null;
    }
  }
  return { replies, problems };
}

/** The ids in "250 2.0.0 queued as <id>" replies. */
export function queuedIds(replies: ParsedReply[]): string[] {
  return replies.flatMap((reply) => {
    const match = /^250 2\.0\.0 queued as (\S+)$/.exec(reply.lines[reply.lines.length - 1] ?? '');
    return match?.[1] ? [match[1]] : [];
  });
}

/**
 * Reply-order contradictions: a "queued" that does not answer a 354, a 354 answered by anything but
 * one final reply, any reply after a 421 or a 221 (both close the connection).
 */
export function orderProblems(replies: ParsedReply[]): string[] {
  const problems: string[] = [];
  let afterData = false;
  replies.forEach((reply, at) => {
    const last = reply.lines[reply.lines.length - 1] ?? '';
    const previous = at > 0 ? (replies[at - 1]?.code ?? 0) : 0;
    if (at > 0 && (previous === 421 || previous === 221)) problems.push(`reply after ${previous}: ${JSON.stringify(last)}`);
    if (at === 0 && reply.code !== 220 && reply.code !== 421 && reply.code !== 554) problems.push(`first reply is not a greeting: ${JSON.stringify(last)}`);
    if (/^250 2\.0\.0 queued as /.test(last) && !afterData) problems.push(`"${last}" does not answer a 354 (reply ${at})`);
    if (afterData && reply.code === 354) problems.push(`354 answered by another 354 (reply ${at})`);
    afterData = reply.code === 354;
  });
  return problems;
}
