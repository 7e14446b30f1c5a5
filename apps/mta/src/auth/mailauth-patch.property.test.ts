// patches/mailauth+7.1.0.patch makes three readers of a message's header block linear
// (parseHeaders, parseReceived's joins, the h= lookup of DKIM verification): each read 1 MB of short
// header lines, or an h= of many names over many fields, in quadratic time, holding the edge's event
// loop for minutes. They must read every header block exactly as mailauth 7.1.0 did: the functions
// as published (testdata/*.mailauth-7.1.0.cjs) are the oracle, on generated hostile header blocks.
import { createRequire } from 'node:module';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { exposedCollector } from '../data/drained-memory.ts';
import { threadCpuMs } from '../thread-cpu.testkit.ts';

const require = createRequire(import.meta.url);

interface ParsedHeader {
  key: string | null;
  casedKey?: string;
  line: Buffer;
}
type ParseHeaders = (buf: Buffer) => { parsed: ParsedHeader[]; original: Buffer };
type SigningHeaderLines = (parsed: ParsedHeader[], fieldNames: string, verify: boolean) => { keys: string; headers: ParsedHeader[] };
type ParseReceived = (line: Buffer | string) => unknown;

const patched = require('mailauth/lib/tools.js') as { parseHeaders: ParseHeaders; getSigningHeaderLines: SigningHeaderLines };
const { parseReceived } = require('mailauth/lib/parse-received.js') as { parseReceived: ParseReceived };
const original = require('./testdata/tools.mailauth-7.1.0.cjs') as { parseHeaders: ParseHeaders; getSigningHeaderLines: SigningHeaderLines };
const originalReceived = require('./testdata/parse-received.mailauth-7.1.0.cjs') as { parseReceived: ParseReceived };

// Lines as a hostile header block has them: fields, names folded before their colon, lines folded
// under a field, lines that are no field at all, empty and odd names, 8-bit bytes.
const LINES = ['From: a@b.test', 'Received: from a by b; date', 'x', ' y', '\tz', ' : v', 'Name', 'Na me: v', ': v', 'DKIM-Signature: v=1', 'Subject:', '', ' ', 'caf\xe9: v', '\xa0x: v', 'A:B'];
const line = fc.oneof(fc.constantFrom(...LINES), fc.string({ maxLength: 6 }).map((text) => text.replace(/[\r\n]/g, '')));
const block = fc
  .tuple(fc.array(line, { maxLength: 12 }), fc.constantFrom('\r\n', '\n', '\r\n\r\n', ''))
  .map(([lines, end]) => Buffer.from(`${lines.join('\r\n')}${end}`, 'latin1'));

/** The parsed rows as comparable values. */
const rows = (parsed: ParsedHeader[]) => parsed.map((row) => ({ key: row.key, casedKey: row.casedKey, line: row.line.toString('latin1') }));

// Received values: clause keywords, words that join the one before, comments (nested, TLS ones),
// quotes, escapes, folds and the date after the semicolon.
const RECEIVED = ['from', 'by', 'with', 'id', 'for', 'envelope-from', 'FROM', 'via', 'x', 'mx.test', '[192.0.2.1]', '(c)', '(a (b) c)', '(TLS1.3 cipher=x)', '(', ')', '"q;x"', '\\', ';', ' ', '\r\n ', '', 'ESMTPS', '<a@b.test>'];
const received = fc.array(fc.oneof(fc.constantFrom(...RECEIVED), fc.string({ maxLength: 4 })), { maxLength: 14 }).map((words) => `Received: ${words.join(' ')}`);

describe('mailauth, patched to read header blocks in linear time, reads them as 7.1.0 did', () => {
  it('parseHeaders: the same rows', () => {
    fc.assert(
      fc.property(block, (buf) => {
        expect(rows(patched.parseHeaders(buf).parsed)).toEqual(rows(original.parseHeaders(buf).parsed));
      }),
      { numRuns: 5000 },
    );
  });

  it('the fields an h= list names, in its order, each the bottom-most not taken yet', () => {
    const names = fc.array(fc.constantFrom('from', 'From', 'x', 'subject', 'dkim-signature', 'na me', 'missing', ' x ', ''), { maxLength: 10 }).map((list) => list.join(':'));
    fc.assert(
      fc.property(block, names, (buf, h) => {
        const parsed = original.parseHeaders(buf).parsed;
        const signing = patched.getSigningHeaderLines(parsed, h, true);
        const expected = original.getSigningHeaderLines(parsed, h, true);
        expect(signing.keys).toBe(expected.keys);
        expect(signing.headers).toEqual(expected.headers);
      }),
      { numRuns: 5000 },
    );
  });

  it('parseReceived: the same clauses, values and comments', () => {
    fc.assert(
      fc.property(received, (text) => {
        expect(parseReceived(text)).toEqual(originalReceived.parseReceived(text));
      }),
      { numRuns: 5000 },
    );
  });

  it('2 MB of short lines or words, and an h= of 80000 names over 160000 fields, grow linearly: 8 times the input, about 8 times the time, never the 64 of a quadratic reader', () => {
    // Relative, so a slow machine does not fail it: a linear reader takes about 8 times as long for
    // 8 times the input, the published (quadratic) ones 64 times (1 MB took over 60 s).
    const quarterMegabyte = 256 * 1024;
    // Measured in the CPU time of this thread, not the wall clock: on two cores shared with the e2e
    // suites the wall clock counts the time this process waited for a core, which has nothing to
    // do with the reader. With the fastest of three wall-clock runs (and 4, then 8 times the input)
    // a linear reader still came out 12, 14 and then 27.8 times slower at a load of 12-19; in CPU
    // time, with a full collection before each run so none falls into one run alone, the same
    // readers came out 6-13 times at a load of 19 (the published ones 61-441 at 1/16 of the input).
    // Node before 23.9 has no per-thread CPU time: the process's, which adds V8's helper threads.
    const collect = exposedCollector();
    const timed = (read: () => unknown) => {
      let fastest = Number.POSITIVE_INFINITY;
      for (let run = 0; run < 3; run += 1) {
        collect?.({ type: 'major' });
        const started = threadCpuMs();
        read();
        fastest = Math.min(fastest, threadCpuMs() - started);
      }
      return fastest;
    };
    const growth = (read: (scale: number) => unknown) => {
      read(1); // warm
      const once = timed(() => read(1));
      return timed(() => read(8)) / Math.max(once, 1);
    };
    expect(growth((k) => patched.parseHeaders(Buffer.from(`Received: from a\r\n${' y\r\n'.repeat((k * quarterMegabyte) / 4)}`)))).toBeLessThan(24);
    expect(growth((k) => patched.parseHeaders(Buffer.from('x\r\n'.repeat((k * quarterMegabyte) / 3))))).toBeLessThan(24);
    expect(growth((k) => parseReceived(`Received: from a ${'y '.repeat((k * quarterMegabyte) / 2)}by b; date`))).toBeLessThan(24);
    expect(growth((k) => parseReceived(`Received: from a ${'(c) '.repeat((k * quarterMegabyte) / 4)}by b; date`))).toBeLessThan(24);
    expect(
      growth((k) => {
        const fields = patched.parseHeaders(Buffer.from('x: y\r\n'.repeat(20_000 * k))).parsed;
        const h = Array.from({ length: 10_000 * k }, (_, index) => `n${index}`).join(':');
        return patched.getSigningHeaderLines(fields, h, true);
      }),
    ).toBeLessThan(24);
  });
});
