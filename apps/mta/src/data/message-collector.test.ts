import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { type CollectedMessage, MessageCollector } from './message-collector.ts';

async function collect(chunks: (string | Buffer)[], maxBytes = 1024): Promise<CollectedMessage> {
  const collector = new MessageCollector(maxBytes);
  await pipeline(Readable.from(chunks.map((chunk) => Buffer.from(chunk))), collector);
  return collector.result();
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
