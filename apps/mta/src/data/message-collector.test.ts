import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
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
    expect(collector.verdict).toEqual({ size: 500, oversize: false, bareLineEnding: false, overBudget: true });
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
