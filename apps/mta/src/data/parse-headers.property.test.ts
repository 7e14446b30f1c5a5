// parseHeaderFacts reads three fields without mailparser's full parse; it must report exactly what
// simpleParser reported for them (the edge's earlier implementation, kept here as the oracle), on
// ordinary headers and on hostile ones: folding, encoded words in several charsets, broken ones,
// raw 8-bit and invalid UTF-8, groups and odd address lists, repeated and empty fields, bare CR or
// LF, an mbox or HTTP first line, NUL and controls, a section longer than 256 KiB.

import { headerSection, storableTextOrNull } from '@postern/shared';
import fc from 'fast-check';
import { simpleParser } from 'mailparser';
import { describe, expect, it } from 'vitest';
import { type HeaderFacts, parseHeaderFacts } from './parse-headers.ts';

function cleanText(value: string | undefined): string | null {
  const text = storableTextOrNull(value, { maxChars: 998 })?.trim();
  return text ? text : null;
}

/** The edge's implementation before: mailparser's simpleParser over the header section. */
async function oracle(raw: Buffer): Promise<HeaderFacts> {
  try {
    const parsed = await simpleParser(Buffer.concat([headerSection(raw), Buffer.from('\r\n')]), {
      skipHtmlToText: true,
      skipTextToHtml: true,
      skipImageLinks: true,
      skipTextLinks: true,
    });
    return { messageId: cleanText(parsed.messageId), subject: cleanText(parsed.subject), from: cleanText(parsed.from?.text) };
  } catch {
    return { messageId: null, subject: null, from: null };
  }
}

const NAMES = ['From', 'from', 'FROM', ' From', 'From ', 'Subject', 'SUBJECT', 'Message-ID', 'Message-Id', 'message-id', 'To', 'Cc', 'Reply-To', 'Sender', 'Date', 'Content-Type', 'Content-Disposition', 'List-Id', 'References', 'In-Reply-To', 'X-Priority', 'Received', 'DKIM-Signature', 'X-Other', 'Fr om', ''];
const PIECES = [
  'alice@example.test', '<bob@example.test>', 'Bob <bob@example.test>', '"Doe, Jane" <jane@example.test>', 'a@b.test, c@d.test', 'undisclosed-recipients:;',
  'Team: x@y.test, z@w.test;', '(comment) x@y.test', 'x@xn--bcher-kva.test', '=?utf-8?B?w6TDtsO8?=', '=?UTF-8?Q?caf=C3=A9?=', '=?iso-8859-1?q?=E9t=E9?=', '=?utf-8?B?PGV2aWxAeC50ZXN0Pg==?=@y.test',
  '=?utf-8?B?broken', '=?x-unknown?B?YWJj?=', '=?utf-8?q?a_b?= =?utf-8?q?c?=', 'plain text', ' ', '', '<', '>', '"', '\\', ',', ';', ':', '@', '(', ')', '<m@id.test>', 'm@id.test', 'text/plain; charset=utf-8', 'multipart/mixed; boundary=b',
  'attachment; filename*=utf-8\'\'a%20b', 'Mon, 1 Jan 2024 00:00:00 +0000', 'not a date', 'high', '\u00e4\u00f6', '\u0000', '\u0001', '\u007f', '\u00ff\u00fe', '\r\n ', '\r\n\t', '\r\n', '\n', '\r', '\n ', '\r\nX: y',
];
const piece = fc.oneof(fc.constantFrom(...PIECES), fc.string({ maxLength: 8 }));
const value = fc.array(piece, { maxLength: 5 }).map((parts) => parts.join(''));
const field = fc.tuple(fc.constantFrom(...NAMES), fc.constantFrom(':', ': ', ' : ', ':\t', ''), value).map(([name, colon, text]) => `${name}${colon}${text}`);
const FIRST = ['', 'From sender@example.test Mon Jan  1 00:00:00 2024\r\n', 'POST /x HTTP/1.1\r\n', ' folded-first\r\n', '\r\n', '\n'];
const ENCODINGS = ['utf8', 'latin1'] as const;
const message = fc
  .tuple(fc.constantFrom(...FIRST), fc.array(field, { maxLength: 8 }), fc.constantFrom('\r\n\r\nbody\r\n', '\r\n', '', '\n\nbody', '\r\n\r\n'), fc.constantFrom(...ENCODINGS))
  .map(([first, fields, end, encoding]) => Buffer.from(`${first}${fields.join('\r\n')}${end}`, encoding));

describe('parseHeaderFacts, against mailparser simpleParser', () => {
  it('reports what simpleParser reports on generated and hostile header sections', async () => {
    await fc.assert(
      fc.asyncProperty(message, async (raw) => {
        expect(parseHeaderFacts(raw)).toEqual(await oracle(raw));
      }),
      { numRuns: 3000 },
    );
  }, 120_000);

  it('reports what simpleParser reports on arbitrary bytes', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 200 }), async (bytes) => {
        const raw = Buffer.from(bytes);
        expect(parseHeaderFacts(raw)).toEqual(await oracle(raw));
      }),
      { numRuns: 1000 },
    );
  }, 120_000);

  // MAIL_MTA_MAX_HEADER_SIZE is 256 KiB by default and may be set higher: a section around and past
  // that size is read whole, as simpleParser reads it (up to its splitter's own 1 MiB).
  it('reports what simpleParser reports on a header section around and past 256 KiB', async () => {
    const KIB_256 = 256 * 1024;
    for (const cut of [KIB_256 - 20, KIB_256 - 1, KIB_256, KIB_256 + 3, 2 * KIB_256 + 3]) {
      const filler = `X-Filler: ${'y'.repeat(cut - 'X-Filler: '.length - 30)}\r\n`;
      const raw = Buffer.from(`Message-ID: <a@b.test>\r\n${filler}Subject: after the filler, maybe cut\r\nFrom: late@example.test\r\n\r\nbody`);
      expect(parseHeaderFacts(raw)).toEqual(await oracle(raw));
    }
  });
});
