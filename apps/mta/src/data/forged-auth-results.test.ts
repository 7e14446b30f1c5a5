// Authentication-Results fields that claim the edge's authserv-id are cut from the header block,
// whole and nothing else: examples of both readings of the authserv-id, and properties against a
// reference that splits the block into lines and fields the plain way, and against mailauth's own
// parser as a reader that must never see our name in a field we leave.
import { createRequire } from 'node:module';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { authservIdOf, claimsAuthservId, forgedAuthResults, lenientAuthservIdOf, withoutFields } from './forged-auth-results.ts';

const headerParser = createRequire(import.meta.url)('mailauth/lib/parse-dkim-headers.js') as (line: string) => { parsed: { value?: string } };

const OURS = 'mx.postern.test';
const PREFIX = Buffer.from('Authentication-Results: mx.postern.test; none\r\nReceived: from a by b; date\r\n');

/** The stored message the edge makes of `message` (latin1 text): our prefix, the forged fields cut. */
function stored(message: string | Buffer): Buffer {
  const data = typeof message === 'string' ? Buffer.from(message, 'latin1') : message;
  const raw = Buffer.concat([PREFIX, data]);
  return withoutFields(raw, PREFIX.length, forgedAuthResults(raw.subarray(PREFIX.length), OURS));
}

describe('the authserv-id of a field value', () => {
  it('as RFC 8601 reads it: after white space and nested comments, a token or a quoted-string', () => {
    expect(authservIdOf(' mx.postern.test; dmarc=pass')).toBe('mx.postern.test');
    expect(authservIdOf(' (a (nested \\) one)) "mx.postern\\.test" 1; dkim=pass')).toBe('mx.postern.test');
    expect(authservIdOf('mx.postern.test(c);arc=pass')).toBe('mx.postern.test');
    expect(authservIdOf(' mx.postern.test/x; dmarc=pass')).toBe('mx.postern.test');
    expect(authservIdOf(' "mx.postern.test')).toBe('mx.postern.test');
    expect(authservIdOf(' (never closed mx.postern.test; dmarc=pass')).toBeNull();
    expect(authservIdOf(' ; dmarc=pass')).toBeNull();
  });

  it('as lenient readers (mailauth) read it: the first part without "=", comments dropped, escapes undone', () => {
    expect(lenientAuthservIdOf(' mx.postern\\.test; dmarc=pass')).toBe('mx.postern.test');
    expect(lenientAuthservIdOf(' mx.postern(x).test; dmarc=pass')).toBe('mx.postern.test');
    expect(lenientAuthservIdOf(' dmarc=pass header.from=bank.test; MX.postern.test')).toBe('MX.postern.test');
    expect(lenientAuthservIdOf(' "mx.postern.test"; dmarc=pass')).toBe('"mx.postern.test"');
    expect(lenientAuthservIdOf(' mx.postern.test 1; dmarc=pass')).toBe('mx.postern.test 1');
    expect(lenientAuthservIdOf(' dmarc=pass')).toBeNull();
  });

  it('claims ours when either reading is ours, in any case, folded or not', () => {
    for (const value of [
      ' mx.postern.test; dmarc=pass',
      ' MX.Postern.TEST;\r\n\tspf=pass',
      '\r\n mx.postern.test; none',
      ' mx.postern\\.test; dmarc=pass',
      ' dmarc=pass; mx.postern.test',
      ' mx.postern.test\u00a0; dmarc=pass',
    ]) {
      expect(claimsAuthservId(value, OURS), value).toBe(true);
    }
    for (const value of [' other.test; dmarc=pass', ' mx.postern.test.evil; dmarc=pass', ' "mx.postern.test "; x=y', ' i=1; other.test', ' mx.postern.testé; x=y', '']) {
      expect(claimsAuthservId(value, OURS), value).toBe(false);
    }
  });
});

describe('forgedAuthResults and withoutFields', () => {
  it('cut each field that claims our name with its continuation lines, and nothing else', () => {
    const fields: Array<[string, 'forged' | 'kept']> = [
      ['Authentication-Results: mx.postern.test; dmarc=pass\r\n', 'forged'],
      ['Received: from x by y; date\r\n', 'kept'],
      ['Authentication-Results: other.test; dmarc=fail\r\n', 'kept'],
      ['authentication-results :\r\n\tMX.POSTERN.TEST;\r\n spf=pass\r\n', 'forged'],
      ['ARC-Authentication-Results: i=1; mx.postern.test; dmarc=pass\r\n', 'kept'],
      ['X-Authentication-Results: mx.postern.test\r\n', 'kept'],
      ['Authentication-Results\r\n : mx.postern.test; dkim=pass\r\n', 'forged'],
      ['Subject: \xe9\x00\r\n', 'kept'],
    ];
    const body = '\r\nAuthentication-Results: mx.postern.test; dmarc=pass\r\n\xff\x00\r\n';
    const message = fields.map(([field]) => field).join('') + body;
    const kept = fields.filter(([, fate]) => fate === 'kept').map(([field]) => field);
    expect(stored(message).toString('latin1')).toBe(PREFIX.toString('latin1') + kept.join('') + body);
  });

  it('reads the whole header block, past any size, and nothing of the body', () => {
    const pad = `X-Pad: ${'p'.repeat(90)}\r\n`.repeat(10_000);
    const message = `Subject: s\r\n${pad}Authentication-Results: mx.postern.test; dmarc=pass\r\n\r\nAuthentication-Results: mx.postern.test; dmarc=pass\r\n`;
    expect(stored(message).toString('latin1')).toBe(`${PREFIX.toString('latin1')}Subject: s\r\n${pad}\r\nAuthentication-Results: mx.postern.test; dmarc=pass\r\n`);
  });

  it('leaves a message without such a field as the same buffer, and one that opens with an empty line alone', () => {
    const raw = Buffer.concat([PREFIX, Buffer.from('Subject: s\r\n\r\nbody\r\n')]);
    expect(withoutFields(raw, PREFIX.length, forgedAuthResults(raw.subarray(PREFIX.length), OURS))).toBe(raw);
    expect(forgedAuthResults(Buffer.from('\r\nAuthentication-Results: mx.postern.test; x=y\r\n'), OURS)).toEqual([]);
    // Headers only, no body: the last field ends the message.
    expect(stored('Subject: s\r\nAuthentication-Results: mx.postern.test; x=y\r\n').toString('latin1')).toBe(`${PREFIX.toString('latin1')}Subject: s\r\n`);
    expect(stored('Authentication-Results: mx.postern.test; x=y').toString('latin1')).toBe(PREFIX.toString('latin1'));
  });
});

// Header blocks as a hostile sender writes them: names in any case and spacing, our name in every
// spelling next to others, comments, quotes, escapes, folds, 8-bit bytes; CRLF line ends only (the
// collector refuses bare CR and LF before anything is stored).
const NAMES = [
  'Authentication-Results', 'authentication-results', 'AUTHENTICATION-RESULTS', 'Authentication-Results ', 'Authentication-Results\t', 'Authentication-Results\r\n ',
  '\vAuthentication-Results', 'Authentication-Results\xa0', 'ARC-Authentication-Results', 'X-Authentication-Results', 'Authentication-Result', 'Received', 'Subject', '',
];
const PIECES = [
  'mx.postern.test', 'MX.POSTERN.TEST', 'Mx.Postern.Test', '"mx.postern.test"', 'mx.postern\\.test', 'mx.postern.test.evil', 'other.test', 'mx.postern', '.test', '1',
  '(c)', '(a (b) c)', '(', ')', '"', '\\', ';', '=', ' ', '\t', '\r\n ', '\r\n\t', 'dmarc=pass', 'none', 'i=1;', '\xa0', '\xc2\xa0', '\xe9', '\x00', 'authentication-results', ':',
];
const value = fc.array(fc.oneof(fc.constantFrom(...PIECES), fc.string({ maxLength: 4 }).map((text) => text.replace(/[\r\n]/g, ''))), { maxLength: 6 }).map((parts) => parts.join(''));
const field = fc.tuple(fc.constantFrom(...NAMES), fc.constantFrom(':', ': ', ''), value).map(([name, colon, text]) => `${name}${colon}${text}`);
const message = fc
  .tuple(fc.array(field, { maxLength: 8 }), fc.constantFrom('\r\n\r\nbody\r\n', '\r\n', '', '\r\n\r\nAuthentication-Results: mx.postern.test; x=y\r\n', '\r\n\r\n'))
  .map(([fields, end]) => Buffer.from(`${fields.join('\r\n')}${end}`, 'latin1'));

/** The plain way: the header block up to the first empty line, cut into lines, lines into fields
 *  (a line that starts with SP or HTAB belongs to the field before it), each field kept or not. */
function reference(data: Buffer): Buffer {
  const text = data.toString('latin1');
  const blank = text.startsWith('\r\n') ? 0 : text.indexOf('\r\n\r\n');
  const blockEnd = blank === -1 ? text.length : blank === 0 ? 0 : blank + 2;
  const fields: string[] = [];
  for (const line of text.slice(0, blockEnd).split(/(?<=\r\n)/)) {
    if (fields.length > 0 && (line.startsWith(' ') || line.startsWith('\t'))) fields[fields.length - 1] += line;
    else fields.push(line);
  }
  const kept = fields.filter((text) => {
    const colon = text.indexOf(':');
    if (colon === -1 || text.slice(0, colon).trim().toLowerCase() !== 'authentication-results') return true;
    const value = Buffer.from(text.slice(colon + 1).replace(/\r\n$/, ''), 'latin1').toString('utf8');
    return !claimsAuthservId(value, OURS);
  });
  return Buffer.concat([PREFIX, Buffer.from(kept.join('') + text.slice(blockEnd), 'latin1')]);
}

describe('properties', () => {
  it('the cut is the reference cut: whole fields of the header block, every other byte in place', () => {
    fc.assert(
      fc.property(message, (data) => {
        expect(stored(data).toString('latin1')).toBe(reference(data).toString('latin1'));
      }),
      { numRuns: 5000 },
    );
  });

  it('no field left behind is one mailauth reads as ours', () => {
    fc.assert(
      fc.property(value, (text) => {
        const read = headerParser(`Authentication-Results:${text}`).parsed.value;
        if (read === OURS) expect(claimsAuthservId(text, OURS)).toBe(true);
      }),
      { numRuns: 5000 },
    );
  });
});
