import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { cutAt } from './cut-at.ts';
import { DataMemoryBudget } from './memory-budget.ts';
import { type CollectedVerdict, MessageCollector } from './message-collector.ts';

async function collect(chunks: (string | Buffer)[], maxBytes = 1024): Promise<CollectedVerdict & { raw: Buffer }> {
  const collector = new MessageCollector(maxBytes);
  await pipeline(Readable.from(chunks.map((chunk) => Buffer.from(chunk))), collector);
  return { ...collector.verdict, raw: collector.takeMessage() };
}

describe('MessageCollector: bare CR / LF (SMTP smuggling)', () => {
  it('keeps a CRLF message byte for byte', async () => {
    const result = await collect(['Subject: hi\r\n', '\r\nbody\r\n']);
    expect(result).toMatchObject({ bareLineEnding: false, oversize: false, size: 21 });
    expect(result.raw.toString()).toBe('Subject: hi\r\n\r\nbody\r\n');
  });

  it('accepts a CRLF split across chunks, either way', async () => {
    expect((await collect(['a\r', '\nb\r\n'])).bareLineEnding).toBe(false);
    expect((await collect(['a\r', '\n', '\r', '\n'])).bareLineEnding).toBe(false);
  });

  // The published smuggling variants: each hides a second "end of data" a lenient server honours.
  it.each([
    ['<LF>.<CR><LF>', 'x\n.\r\nMAIL FROM:<a@b>\r\n'],
    ['<LF>.<LF>', 'x\n.\nMAIL FROM:<a@b>\r\n'],
    ['<CR><LF>.<LF>', 'x\r\n.\nMAIL FROM:<a@b>\r\n'],
    ['<CR>.<CR>', 'x\r.\rMAIL FROM:<a@b>\r\n'],
    ['<CR><CR><LF>.', 'x\r\r\n.\r\nMAIL FROM:<a@b>\r\n'],
    ['<CR><LF>.<CR>', 'x\r\n.\rMAIL FROM:<a@b>\r\n'],
    ['<LF><LF>', 'x\n\nMAIL FROM:<a@b>\r\n'],
  ])('refuses %s', async (_name, payload) => {
    const result = await collect(['Subject: s\r\n\r\n', payload]);
    expect(result.bareLineEnding).toBe(true);
    expect(result.raw.length).toBe(0);
  });

  it('finds a bare LF at the start of a chunk and a bare CR at the very end', async () => {
    expect((await collect(['a\r\n', '\nb\r\n'])).bareLineEnding).toBe(true);
    expect((await collect(['a\r\n', 'b\r'])).bareLineEnding).toBe(true);
    expect((await collect(['a\r', 'b\r\n'])).bareLineEnding).toBe(true);
  });
});

describe('MessageCollector: size cap on the bytes', () => {
  it('counts to the end past the cap but keeps nothing', async () => {
    const line = `${'x'.repeat(98)}\r\n`;
    const result = await collect(Array.from({ length: 50 }, () => line), 1000);
    expect(result).toMatchObject({ oversize: true, size: 5000, bareLineEnding: false });
    expect(result.raw.length).toBe(0);
  });

  it('accepts exactly the cap', async () => {
    const result = await collect([`${'x'.repeat(998)}\r\n`], 1000);
    expect(result.oversize).toBe(false);
    expect(result.raw.length).toBe(1000);
  });
});

describe('MessageCollector: the DATA memory budget', () => {
  const lines = (count: number) => Array.from({ length: count }, () => `${'x'.repeat(98)}\r\n`);

  it('claims every kept byte, and the caller releases them after the commit', async () => {
    const budget = new DataMemoryBudget(1000);
    const reservation = budget.reserve();
    const collector = new MessageCollector(1000, reservation);
    await pipeline(Readable.from(lines(3).map((line) => Buffer.from(line))), collector);
    expect(budget.heldBytes).toBe(300);
    const trace = Buffer.from('Received: x\r\n');
    const message = collector.takeMessage(trace);
    expect(message.length).toBe(trace.length + 300);
    expect(message.subarray(0, trace.length).equals(trace)).toBe(true);
    reservation.release();
    expect(budget.heldBytes).toBe(0);
  });

  it('stops keeping when the budget has no room, drains to the end, and lets go of what it held', async () => {
    const budget = new DataMemoryBudget(1000);
    const other = budget.reserve();
    other.tryGrow(750); // another message in flight
    const collector = new MessageCollector(10_000, budget.reserve());
    await pipeline(Readable.from(lines(5).map((line) => Buffer.from(line))), collector);
    expect(collector.verdict).toEqual({ size: 500, oversize: false, bareLineEnding: false, overBudget: true, headerTooLarge: false });
    expect(collector.takeMessage().length).toBe(0);
    expect(budget.heldBytes).toBe(750);
  });

  it('an oversize or smuggling message gives its bytes back as soon as it is refused', async () => {
    const budget = new DataMemoryBudget(10_000);
    const oversize = new MessageCollector(250, budget.reserve());
    await pipeline(Readable.from(lines(5).map((line) => Buffer.from(line))), oversize);
    expect(oversize.verdict).toMatchObject({ oversize: true, overBudget: false });
    const smuggling = new MessageCollector(10_000, budget.reserve());
    await pipeline(Readable.from(['a\r\n', 'b\n.\r\n'].map((chunk) => Buffer.from(chunk))), smuggling);
    expect(smuggling.verdict).toMatchObject({ bareLineEnding: true, overBudget: false });
    expect(budget.heldBytes).toBe(0);
  });
});

describe('MessageCollector: many small chunks', () => {
  // A sender writing a byte per packet: kept as received, each byte was a Buffer of its own (and its
  // read buffer); 1 MB so peaked at +40-70 MiB that the budget, counting bytes, never saw.
  it('joins runs of small chunks into buffers of their own size, in order with the large ones', async () => {
    const message = Buffer.from(`Subject: tiny\r\n\r\n${'abcdefghij\r\n'.repeat(10_000)}`);
    const large = Buffer.from(`${'y'.repeat(8190)}\r\n`);
    const chunks = [...message.subarray(0, 60_000)].map((byte) => Buffer.from([byte]));
    chunks.push(large, ...[...message.subarray(60_000)].map((byte) => Buffer.from([byte])));
    const collector = new MessageCollector(1024 * 1024);
    await pipeline(Readable.from(chunks), collector);
    expect(collector.keptChunks().length).toBeLessThanOrEqual(Math.ceil(chunks.length / 256) + 2);
    const expected = Buffer.concat([message.subarray(0, 60_000), large, message.subarray(60_000)]);
    expect(collector.takeMessage().equals(expected)).toBe(true);
    expect(collector.verdict).toMatchObject({ size: expected.length, bareLineEnding: false });
  });
});

describe('MessageCollector: header size cap (MAIL_MTA_MAX_HEADER_SIZE)', () => {
  /** Through a collector with a header cap, in these chunks. */
  async function collectHeader(chunks: Buffer[], maxHeaderBytes: number, memory = new DataMemoryBudget(1024 * 1024).reserve()) {
    const collector = new MessageCollector(1024 * 1024, memory, maxHeaderBytes);
    await pipeline(Readable.from(chunks), collector);
    return { ...collector.verdict, raw: collector.takeMessage() };
  }

  /** The header section's length as the parsers read it: up to and including the CRLF before the
   *  first empty line; 0 when the message opens with one; all of it when there is none. */
  function headerLength(message: Buffer): number {
    if (message[0] === 0x0d && message[1] === 0x0a) return 0;
    const end = message.indexOf('\r\n\r\n');
    return end === -1 ? message.length : end + 2;
  }

  it('keeps a header of exactly the cap, refuses one byte more; the body does not count', async () => {
    const header = (length: number) => `X: ${'h'.repeat(length - 5)}\r\n`;
    const body = `${'b'.repeat(998)}\r\n`.repeat(5);
    const exact = await collectHeader([Buffer.from(`${header(100)}\r\n${body}`)], 100);
    expect(exact).toMatchObject({ headerTooLarge: false, size: 102 + body.length });
    expect(exact.raw.length).toBe(102 + body.length);
    const over = await collectHeader([Buffer.from(`${header(101)}\r\n${body}`)], 100);
    expect(over).toMatchObject({ headerTooLarge: true, oversize: false, bareLineEnding: false });
    expect(over.raw.length).toBe(0);
  });

  it('a message without a blank line is header all through; one that opens with it has none', async () => {
    expect((await collectHeader([Buffer.from(`${'X: y\r\n'.repeat(30)}`)], 100)).headerTooLarge).toBe(true);
    expect((await collectHeader([Buffer.from(`${'X: y\r\n'.repeat(16)}`)], 100)).headerTooLarge).toBe(false);
    expect((await collectHeader([Buffer.from(`\r\n${'X: y\r\n'.repeat(30)}`)], 0)).headerTooLarge).toBe(false);
  });

  it('stops keeping as soon as the header is past the cap, before the end of DATA: nothing more is held', async () => {
    const budget = new DataMemoryBudget(1024 * 1024);
    const collector = new MessageCollector(1024 * 1024, budget.reserve(), 1000);
    const line = Buffer.from(`X-Long: ${'a'.repeat(90)}\r\n`);
    for (let i = 0; i < 9; i++) collector.write(line);
    expect(collector.keptChunks().length).toBeGreaterThan(0);
    expect(budget.heldBytes).toBe(900);
    collector.write(line);
    collector.write(line);
    // The stream is not ended: a parser reading the kept bytes now would see none.
    expect(collector.keptChunks()).toEqual([]);
    expect(budget.heldBytes).toBe(0);
    collector.write(Buffer.from(`${'a'.repeat(10_000)}\r\n`));
    expect(budget.heldBytes).toBe(0);
    collector.end();
    await new Promise((resolve) => collector.on('finish', resolve));
    expect(collector.verdict).toMatchObject({ headerTooLarge: true, size: 1100 + 10_002 });
  });

  // The blank line may be cut anywhere by TCP: the verdict must be the same whatever the cuts.
  it('decides on the bytes alone: whole, a byte at a time, or cut anywhere', async () => {
    const line = fc.oneof(fc.constant(''), fc.string({ unit: fc.constantFrom('a', ':', ' ', '\t'), maxLength: 12 }));
    const messages = fc.array(line, { maxLength: 12 }).map((lines) => Buffer.from(lines.map((l) => `${l}\r\n`).join('')));
    await fc.assert(
      fc.asyncProperty(messages, fc.nat({ max: 80 }), fc.array(fc.nat(), { maxLength: 8 }), async (message, cap, at) => {
        const expected = headerLength(message) > cap;
        const ways = [[message], [...message].map((byte) => Buffer.from([byte])), cutAt(message, at)];
        for (const chunks of ways) {
          const received = await collectHeader(chunks, cap);
          expect(received.headerTooLarge).toBe(expected);
          expect(received.raw.equals(expected ? Buffer.alloc(0) : message)).toBe(true);
        }
      }),
      { seed: 20_261_128, numRuns: 400 },
    );
  });
});
