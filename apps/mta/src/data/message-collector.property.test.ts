// Property tests for what the edge does with DATA bytes: smtp-server's stream parser (end of data,
// dot-unstuffing) feeding the MessageCollector (size on bytes, bare CR / LF, memory), exactly as a
// session wires them. TCP may cut the bytes anywhere, and an attacker chooses where (the 2023 SMTP
// smuggling attacks relied on a parser that read a split differently from a whole), so every
// property is checked with the same bytes whole, one byte at a time and cut at random places: the
// verdict, the stored bytes and the commands after the final dot must not depend on the cuts; nor
// must the header cap's, whose blank line may fall on any cut.
// A fixed seed keeps a failure reproducible; a counterexample is printed shrunk.
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import fc from 'fast-check';
import { SMTPStream } from 'smtp-server/lib/smtp-stream.js';
import { describe, expect, it } from 'vitest';
import { cutAt } from './cut-at.ts';
import { exposedCollector } from './drained-memory.ts';
import { DataMemoryBudget, type MemoryReservation } from './memory-budget.ts';
import { MessageCollector } from './message-collector.ts';

const SEED = 20_261_127;
const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;
const CRLF = Buffer.from('\r\n');
const TERMINATOR = Buffer.from('.\r\n');

interface Received {
  size: number;
  oversize: boolean;
  bare: boolean;
  headerTooLarge: boolean;
  /** The reply the edge derives (on-data.ts checks in this order). */
  outcome: 'too_large' | 'bare_line_ending' | 'header_too_large' | 'no_room' | 'accepted';
  stored: string;
  /** Command lines the parser saw after the final dot. */
  after: string[];
}

/** One DATA phase as smtp-connection wires it: parser in data mode -> collector; then continue(). */
async function receive(chunks: Buffer[], maxBytes: number, memory?: MemoryReservation, maxHeaderBytes = maxBytes): Promise<Received> {
  const parser = new SMTPStream();
  const after: string[] = [];
  parser.oncommand = (line: Buffer, next?: () => void) => {
    after.push(line.toString('latin1'));
    next?.();
  };
  const collector = new MessageCollector(maxBytes, memory, maxHeaderBytes);
  const collected = pipeline(parser.startDataMode(), collector).then(() => parser.continue());
  const finished = new Promise<void>((resolve, reject) => {
    parser.once('finish', resolve);
    parser.once('error', reject);
  });
  for (const chunk of chunks) parser.write(chunk);
  parser.end();
  await collected;
  await finished;
  const verdict = collector.verdict;
  const outcome = verdict.oversize
    ? 'too_large'
    : verdict.bareLineEnding
      ? 'bare_line_ending'
      : verdict.headerTooLarge
        ? 'header_too_large'
        : verdict.overBudget
          ? 'no_room'
          : 'accepted';
  return {
    size: verdict.size,
    oversize: verdict.oversize,
    bare: verdict.bareLineEnding,
    headerTooLarge: verdict.headerTooLarge,
    outcome,
    stored: collector.takeMessage().toString('latin1'),
    after,
  };
}

function oneByteChunks(bytes: Buffer): Buffer[] {
  return Array.from({ length: bytes.length }, (_, i) => bytes.subarray(i, i + 1));
}

/** The same bytes whole, a byte at a time and at the given cuts: all three must agree. */
async function receiveEveryWay(wire: Buffer, cuts: number[], maxBytes: number, maxHeaderBytes = maxBytes): Promise<Received> {
  const whole = await receive([wire], maxBytes, undefined, maxHeaderBytes);
  expect(await receive(oneByteChunks(wire), maxBytes, undefined, maxHeaderBytes)).toEqual(whole);
  expect(await receive(cutAt(wire, cuts), maxBytes, undefined, maxHeaderBytes)).toEqual(whole);
  return whole;
}

/** RFC 5321 4.5.2 transparency, sender side: a line (after CRLF) starting with "." gets one more. */
function stuff(message: Buffer): Buffer {
  return Buffer.from(message.toString('latin1').replace(/(^|\r\n)\./g, '$1..'), 'latin1');
}

/** End of data on the wire: ".\r\n" first, or the first "\r\n.\r\n" (its CRLF belongs to the message). */
function referenceSplit(wire: Buffer): { content: Buffer; rest: Buffer } | null {
  if (wire.subarray(0, 3).equals(TERMINATOR)) return { content: Buffer.alloc(0), rest: wire.subarray(3) };
  const at = wire.indexOf('\r\n.\r\n');
  if (at === -1) return null;
  return { content: wire.subarray(0, at + 2), rest: wire.subarray(at + 5) };
}

/** Receiver side: a line (after any LF) starting with ".." loses its first dot. */
function referenceUnstuff(content: Buffer): Buffer {
  const out: number[] = [];
  for (let i = 0; i < content.length; i++) {
    const lineStart = i === 0 || content[i - 1] === LF;
    if (lineStart && content[i] === DOT && content[i + 1] === DOT) continue;
    out.push(content[i] as number);
  }
  return Buffer.from(out);
}

function hasBareLineEnding(bytes: Buffer): boolean {
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] === CR && bytes[i + 1] !== LF) return true;
    if (bytes[i] === LF && bytes[i - 1] !== CR) return true;
  }
  return false;
}

/** Bytes of one line: anything but CR and LF, dots and NUL / 8-bit often. */
const lineByte = fc.oneof(
  { weight: 3, arbitrary: fc.integer({ min: 0, max: 255 }).filter((b) => b !== CR && b !== LF) },
  { weight: 2, arbitrary: fc.constant(DOT) },
  { weight: 1, arbitrary: fc.constantFrom(0x00, 0xff, 0x80, 0x20, 0x09) },
);
const line = fc.array(lineByte, { maxLength: 24 }).map((bytes) => Buffer.from(bytes));
/** A message as a well-behaved client holds it: CRLF lines (possibly none, possibly empty). */
const message = fc.array(line, { maxLength: 12 }).map((lines) => Buffer.concat(lines.flatMap((l) => [l, CRLF])));
const cuts = fc.array(fc.nat(), { maxLength: 8 });

describe('DATA end of data and dot-unstuffing (smtp-server parser + collector)', () => {
  it('stores exactly the message a client dot-stuffed, whatever the cuts, and hands back what follows the dot as commands', async () => {
    await fc.assert(
      fc.asyncProperty(message, cuts, async (body, at) => {
        const wire = Buffer.concat([stuff(body), TERMINATOR, Buffer.from('RSET\r\nQUIT\r\n')]);
        const received = await receiveEveryWay(wire, at, 1 << 20);
        expect(received).toEqual({
          size: body.length,
          oversize: false,
          bare: false,
          headerTooLarge: false,
          outcome: 'accepted',
          stored: body.toString('latin1'),
          after: ['RSET', 'QUIT'],
        });
      }),
      { seed: SEED, numRuns: 300 },
    );
  });

  it('any bytes at all: ends at the first <CRLF>.<CRLF>, unstuffs, refuses bare CR/LF — identically however they are cut', async () => {
    // Bytes biased towards the ones that matter for framing, so terminators and their near misses
    // (the smuggling variants) occur often; a real terminator and a command follow in any case.
    const framingByte = fc.oneof(fc.constantFrom(CR, LF, DOT, DOT, 0x78, 0x00), fc.integer({ min: 0, max: 255 }));
    const noise = fc.array(framingByte, { maxLength: 48 }).map((bytes) => Buffer.from(bytes));
    await fc.assert(
      fc.asyncProperty(noise, cuts, async (bytes, at) => {
        const wire = Buffer.concat([bytes, Buffer.from('\r\n.\r\nNOOP\r\n')]);
        const received = await receiveEveryWay(wire, at, 1 << 20);
        const split = referenceSplit(wire);
        if (!split) throw new Error('unreachable: the wire always holds a terminator');
        const content = referenceUnstuff(split.content);
        expect(received.bare).toBe(hasBareLineEnding(content));
        // smtp-server does not unstuff a ".." right after a bare LF that opens the data (its scan
        // starts at the third byte), so the count may differ by one there — in a message refused
        // for that bare LF anyway. Everywhere else size and bytes are exact.
        if (!received.bare) expect(received.size).toBe(content.length);
        expect(received.stored).toBe(received.bare ? '' : content.toString('latin1'));
        // Commands: what follows the terminator, split on LF as smtp-server does.
        const rest = split.rest.toString('latin1').split(/\r?\n/);
        if (rest[rest.length - 1] === '') rest.pop();
        expect(received.after).toEqual(rest);
      }),
      { seed: SEED, numRuns: 2_000 },
    );
  });

  // The published smuggling sequences, hidden at any line boundary of any message, each followed by a
  // smuggled transaction: the message is refused as a whole, never cut short and accepted.
  const smuggling = ['\n.\r\n', '\n.\n', '\r\n.\n', '\r.\r', '\r.\r\n', '\r\r\n.\r\n', '\r\n.\r', '\n.\r', '\r\n\r.\r\n', '\n..\n', '\r\n\x00.\r\n'];
  it('refuses every smuggling variant wherever it sits and however the bytes are cut', async () => {
    await fc.assert(
      fc.asyncProperty(message, fc.constantFrom(...smuggling), fc.nat(), cuts, async (body, sequence, where, at) => {
        const lines = body.toString('latin1').split('\r\n');
        const index = where % lines.length;
        const head = lines.slice(0, index).join('\r\n');
        const tail = lines.slice(index).join('\r\n');
        const payload = `${head}${sequence}MAIL FROM:<admin@victim.test>\r\nRCPT TO:<one@postern.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n${tail}`;
        const wire = Buffer.concat([stuff(Buffer.from(payload, 'latin1')), TERMINATOR]);
        const received = await receiveEveryWay(wire, at, 1 << 20);
        if (sequence === '\r\n\x00.\r\n') {
          // Not smuggling: a NUL before the dot makes it an ordinary line.
          expect(received.outcome).toBe('accepted');
          return;
        }
        expect(received.outcome).toBe('bare_line_ending');
        expect(received.stored).toBe('');
      }),
      { seed: SEED, numRuns: 1_000 },
    );
  });
});

describe('DATA size cap counted on bytes', () => {
  it('refuses exactly the messages whose unstuffed bytes exceed the cap, multibyte text included', async () => {
    const text = fc.array(fc.string({ unit: 'grapheme', maxLength: 20 }).map((s) => s.replace(/[\r\n]/g, '')), { maxLength: 8 });
    await fc.assert(
      fc.asyncProperty(text, fc.nat({ max: 400 }), cuts, async (lines, cap, at) => {
        const body = Buffer.from(lines.map((l) => `${l}\r\n`).join(''), 'utf8');
        const wire = Buffer.concat([stuff(body), TERMINATOR]);
        const received = await receiveEveryWay(wire, at, cap);
        expect(received.size).toBe(body.length);
        expect(received.oversize).toBe(body.length > cap);
        expect(received.stored).toBe(body.length > cap ? '' : body.toString('latin1'));
      }),
      { seed: SEED, numRuns: 300 },
    );
  });

  it('with a shared memory budget, the reply depends only on the bytes, never on the cuts', async () => {
    await fc.assert(
      fc.asyncProperty(message, fc.nat({ max: 200 }), fc.nat({ max: 200 }), cuts, async (body, cap, room, at) => {
        const wire = Buffer.concat([stuff(body), TERMINATOR]);
        const outcomes = new Set<string>();
        for (const chunks of [[wire], oneByteChunks(wire), cutAt(wire, at)]) {
          const budget = new DataMemoryBudget(room);
          const reservation = budget.reserve();
          const received = await receive(chunks, cap, reservation);
          outcomes.add(received.outcome);
          expect(budget.heldBytes).toBe(received.outcome === 'accepted' ? body.length : 0);
          reservation.release();
          expect(budget.heldBytes).toBe(0);
        }
        const expected = body.length > cap ? 'too_large' : body.length > room ? 'no_room' : 'accepted';
        expect([...outcomes]).toEqual([expected]);
      }),
      { seed: SEED, numRuns: 200 },
    );
  });
});

describe('DATA header section cap (MAIL_MTA_MAX_HEADER_SIZE)', () => {
  /** Its length as the edge defines it: up to the CRLF before the blank line; all of a message without one. */
  function headerLength(message: Buffer): number {
    const at = Buffer.concat([CRLF, message]).indexOf('\r\n\r\n');
    return at === -1 ? message.length : at;
  }
  // Lines biased towards the empty line that ends the header and the dot-led ones the parser
  // unstuffs before the collector counts them: the blank line lands on every cut, in every chunk.
  const headerLine = fc.oneof(line, fc.constantFrom(Buffer.alloc(0), Buffer.from('.'), Buffer.from('..'), Buffer.from('.x')));
  const headerish = fc.array(headerLine, { maxLength: 12 }).map((lines) => Buffer.concat(lines.flatMap((l) => [l, CRLF])));

  it('refuses exactly the messages whose header section, unstuffed, exceeds the cap, whatever the cuts; the rest stored as sent', async () => {
    await fc.assert(
      fc.asyncProperty(headerish, fc.nat({ max: 120 }), cuts, async (body, cap, at) => {
        const wire = Buffer.concat([stuff(body), TERMINATOR, Buffer.from('RSET\r\n')]);
        const received = await receiveEveryWay(wire, at, 1 << 20, cap);
        const tooLarge = headerLength(body) > cap;
        expect({ headerTooLarge: received.headerTooLarge, stored: received.stored, after: received.after }).toEqual({
          headerTooLarge: tooLarge,
          stored: tooLarge ? '' : body.toString('latin1'),
          after: ['RSET'],
        });
      }),
      { seed: SEED, numRuns: 1_000 },
    );
  });
});

describe('dot-stuffed lines', () => {
  // smtp-server once wrote each dot-stuffed line to the message stream on its own, so the collector
  // kept one small buffer per line: some 80 times the message's size in memory (main-process e2e).
  it('reach the collector in one chunk per chunk received, not one per line', async () => {
    const body = Buffer.from(`Subject: dots\r\n\r\n${'..\r\n'.repeat(100_000)}`);
    const chunks = cutAt(Buffer.concat([body, TERMINATOR]), [65_536, 131_072, 196_608, 262_144, 327_680, 393_216]);
    const parser = new SMTPStream();
    parser.oncommand = (_line: Buffer, next?: () => void) => next?.();
    const collector = new MessageCollector(10 * 1024 * 1024);
    const collected = pipeline(parser.startDataMode(), collector).then(() => parser.continue());
    for (const chunk of chunks) parser.write(chunk);
    parser.end();
    await collected;
    expect(collector.keptChunks().length).toBeLessThanOrEqual(chunks.length);
    expect(collector.takeMessage().toString('latin1')).toBe(`Subject: dots\r\n\r\n${'.\r\n'.repeat(100_000)}`);
  });
});

describe('DATA memory stays bounded on 20 MB inputs', () => {
  const INPUT = 20 * 1024 * 1024;
  /** Measured 4-8 MiB (the budget case keeps its 2 MiB); keeping the input would be 20 MiB and more. */
  const BUFFER_GROWTH_LIMIT = 12 * 1024 * 1024;

  /** INPUT bytes of CRLF lines (some dot-led), produced lazily in chunks of varying size. */
  function* lines(finalBytes: Buffer, chunkSizes: number[]): Generator<Buffer> {
    const lineBytes = Buffer.from(`..dot-led line\r\n${'x'.repeat(1000)}\r\n`);
    let sent = 0;
    let turn = 0;
    let carry = Buffer.alloc(0);
    while (sent < INPUT) {
      const want = chunkSizes[turn++ % chunkSizes.length] as number;
      const parts = [carry];
      let length = carry.length;
      while (length < want) {
        parts.push(lineBytes);
        length += lineBytes.length;
      }
      const joined = Buffer.concat(parts, length);
      yield joined.subarray(0, want);
      carry = Buffer.from(joined.subarray(want));
      sent += want;
    }
    yield Buffer.concat([carry, finalBytes]);
  }

  /** V8's gc(), as drained-memory.ts gets it. */
  function fullCollection(): void {
    const gc = exposedCollector();
    if (!gc) throw new Error("V8's gc() could not be had (drained-memory.ts)");
    gc({ type: 'major' });
  }

  /** A reservation that remembers the most it ever held at once. */
  function watched(limit: number) {
    const budget = new DataMemoryBudget(limit);
    const reservation = budget.reserve();
    let peak = 0;
    return {
      peak: () => peak,
      held: () => budget.heldBytes,
      reservation: {
        tryGrow: (bytes: number) => {
          const fits = reservation.tryGrow(bytes);
          peak = Math.max(peak, budget.heldBytes);
          return fits;
        },
        release: () => reservation.release(),
      } satisfies MemoryReservation,
    };
  }

  async function feed(chunks: Iterable<Buffer>, maxBytes: number, memory: MemoryReservation) {
    const parser = new SMTPStream();
    parser.oncommand = (_line: Buffer, next?: () => void) => next?.();
    const collector = new MessageCollector(maxBytes, memory);
    const collected = pipeline(parser.startDataMode(), collector).then(() => parser.continue());
    await pipeline(Readable.from(chunks), parser);
    await collected;
    return collector;
  }

  it.each([
    ['over the size cap (1 MiB)', 1024 * 1024, 64 * 1024 * 1024, 'oversize'],
    ['over the memory budget (2 MiB)', 64 * 1024 * 1024, 2 * 1024 * 1024, 'overBudget'],
    ['a smuggling sequence near the start', 64 * 1024 * 1024, 64 * 1024 * 1024, 'bareLineEnding'],
  ] as const)('%s: keeps at most the limit, releases it when refused, and stores nothing', async (_name, cap, room, flag) => {
    const watch = watched(room);
    const chunkSizes = flag === 'bareLineEnding' ? [7, 65_536, 1, 16_384] : [65_536, 1_500, 16_384, 3];
    const chunks = lines(Buffer.from('\r\n.\r\n'), chunkSizes);
    const source = flag === 'bareLineEnding' ? (function* () {
      yield Buffer.from('Subject: s\r\n\r\nx\n.\r\nMAIL FROM:<a@b>\r\n');
      yield* chunks;
    })() : chunks;
    // Outside memory too: the buffers the parser and collector let go are collected as they go
    // (drained-memory.ts), so the process never holds the 10 MB at once.
    // A full collection first, so the garbage of the test before does not hide this one's growth.
    fullCollection();
    const baseline = process.memoryUsage().arrayBuffers;
    let peakBuffers = 0;
    const sampled = (function* () {
      for (const chunk of source) {
        peakBuffers = Math.max(peakBuffers, process.memoryUsage().arrayBuffers - baseline);
        yield chunk;
      }
    })();
    const collector = await feed(sampled, cap, watch.reservation);
    const verdict = collector.verdict;
    expect(verdict[flag]).toBe(true);
    // Counted to the end although nothing is kept (a dot-led line loses its stuffing dot).
    expect(verdict.size).toBeGreaterThan(INPUT * 0.99);
    expect(collector.takeMessage().length).toBe(0);
    // Never more than the smaller limit plus one chunk in flight; nothing held once refused.
    expect(watch.peak()).toBeLessThanOrEqual(Math.min(cap, room) + 65_536 + 8);
    expect(watch.held()).toBe(0);
    expect(peakBuffers).toBeLessThan(BUFFER_GROWTH_LIMIT);
  }, 60_000);
});
