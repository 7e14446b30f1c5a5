// The header section's size cap (MAIL_MTA_MAX_HEADER_SIZE) on a real socket, against the shapes that
// held the edge's event loop, and every other session with it, for seconds to tens of seconds while
// the header parsers and mailauth read them after the final dot: one 16 MB field, 200,000 small
// fields, one field folded into 500,000 lines, a message with no blank line (all header), a field of
// 8-bit and NUL bytes. Each is now refused 552 5.3.4 and nothing is stored, and a watching session
// is answered meanwhile as it is while an ordinary message of the same size (its bytes in the body)
// is handled, in the same run.
import { createAlias, createDomain } from '@postern/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Edge } from '../../apps/mta/src/edge.ts';
import { createTestDatabase, type TestDatabase } from '../harness/index.ts';
import { type ScriptedDns, startScriptedDns } from '../harness/scripted-dns.ts';
import { metricsText, openSession, QUEUED, sendToDesk, startTestEdge } from './helpers/edge.ts';
import { calmestOf, slowestAnswerDuring, stallBound } from './helpers/stall-watch.ts';

let db: TestDatabase;
let dns: ScriptedDns;
let edge: Edge;

beforeAll(async () => {
  db = await createTestDatabase('mta-header-size');
  await createDomain(db.pool, 'postern.test');
  await createAlias(db.pool, { domain: 'postern.test', localPart: 'desk', kind: 'forward', targets: ['desk@inbox.test'] });
  // Inbound authentication runs as in production (annotate), its DNS answering nothing at once.
  dns = await startScriptedDns(() => undefined);
  edge = await startTestEdge(db.dsn, { MAIL_DNS_SERVERS: dns.server });
});

afterAll(async () => {
  await edge?.stop();
  await dns?.close();
  await db?.drop();
});

const SIZE = 16_000_000;
const TAIL = 'To: desk@postern.test\r\nSubject: header size\r\n\r\nHello.\r\n';

/** A field of `length` bytes of every value but CR and LF (8-bit, NUL, controls). */
function binaryField(length: number): Buffer {
  const bytes = Buffer.alloc(length);
  for (let i = 0; i < length; i++) {
    const byte = (i * 131) & 0xff;
    bytes[i] = byte === 0x0d || byte === 0x0a ? 0 : byte;
  }
  return Buffer.concat([Buffer.from('From: '), bytes, Buffer.from(`\r\n${TAIL}`)]);
}

const hostile: Record<string, () => Buffer> = {
  'one 16 MB From field': () => Buffer.from(`From: ${'a'.repeat(SIZE)}\r\n${TAIL}`),
  '200,000 small fields': () => Buffer.from(`From: someone@outside.test\r\n${Array.from({ length: 200_000 }, (_, i) => `X-F${i}: v\r\n`).join('')}${TAIL}`),
  'one field folded into 500,000 lines': () => Buffer.from(`From: someone@outside.test\r\nSubject: a\r\n${' b\r\n'.repeat(500_000)}${TAIL}`),
  'no blank line: all header': () => Buffer.from(`From: someone@outside.test\r\n${`X-H: ${'v'.repeat(70)}\r\n`.repeat(SIZE / 77)}`),
  'a 16 MB field of 8-bit and NUL bytes': () => binaryField(SIZE),
};

async function messageCount(): Promise<number> {
  return (await db.pool.query('SELECT count(*)::int AS n FROM mail.messages')).rows[0].n;
}

describe('the header section size cap', () => {
  it('refuses each hostile header 552 5.3.4, stores nothing, and another session is answered meanwhile as during an ordinary message of the same size', async () => {
    const send = (message: Buffer) => sendToDesk(edge, message, { from: 'someone@outside.test', helo: 'mail.outside.test' });
    const watcher = await openSession(edge, 'watcher.outside.test');
    try {
      // The reference: 16 MB in the body of an ordinary message, in the same run.
      const ordinary = await slowestAnswerDuring(watcher, () => send(Buffer.from(`From: someone@outside.test\r\n${TAIL}${`${'y'.repeat(78)}\r\n`.repeat(SIZE / 80)}`)));
      expect(ordinary.result).toMatch(QUEUED);
      const before = await messageCount();
      for (const [shape, make] of Object.entries(hostile)) {
        const { result: reply, slowest } = await calmestOf(watcher, ordinary.slowest, () => send(make()));
        expect({ shape, reply, slowAnswer: slowest >= stallBound(ordinary.slowest) }).toEqual({
          shape,
          reply: '552 5.3.4 Message header exceeds the maximum size of 262144 bytes',
          slowAnswer: false,
        });
      }
      expect(await messageCount()).toBe(before);
      expect(await metricsText(edge)).toContain(`mail_mta_rejections_total{stage="data",reason="header_too_large",app="mta"} ${Object.keys(hostile).length}`);
    } finally {
      await watcher.quit();
    }
  }, 300_000);

  // Below the cap, per-field work: mailauth read each group nested in a From field again for every
  // level (nodemailer 10.0.10's addressparser, up to 50 levels), so 256 KiB of "g: g: ..." cost it 50
  // reads of the field: 3-4 s of held event loop. It now reads the field once (mailauth's nodemailer
  // is the project's 10.6.0, package.json overrides).
  it('a From of nested groups just under the cap is accepted, and another session is answered meanwhile as during an ordinary message', async () => {
    const send = (message: Buffer) => sendToDesk(edge, message, { from: 'someone@outside.test', helo: 'mail.outside.test' });
    const length = 250_000;
    const watcher = await openSession(edge, 'watcher.outside.test');
    try {
      const ordinary = await slowestAnswerDuring(watcher, () => send(Buffer.from(`From: someone@outside.test\r\n${TAIL}${`${'y'.repeat(78)}\r\n`.repeat(length / 80)}`)));
      expect(ordinary.result).toMatch(QUEUED);
      const { result: reply, slowest } = await calmestOf(watcher, ordinary.slowest, () => send(Buffer.from(`From: ${'g: '.repeat(length / 3)}\r\n${TAIL}`)));
      expect({ reply, slowAnswer: slowest >= stallBound(ordinary.slowest) }).toEqual({ reply: expect.stringMatching(QUEUED), slowAnswer: false });
    } finally {
      await watcher.quit();
    }
  }, 120_000);

  it('a header of exactly the cap is accepted', async () => {
    const head = `From: someone@outside.test\r\n${TAIL.slice(0, TAIL.indexOf('\r\n\r\n') + 2)}`;
    const filler = 262_144 - head.length - 'X-Filler: \r\n'.length;
    const fields = `X-Filler: ${'f'.repeat(filler)}\r\n${head}`;
    expect(Buffer.byteLength(fields)).toBe(262_144);
    expect(await sendToDesk(edge, Buffer.from(`${fields}\r\nHello.\r\n`), { from: 'someone@outside.test', helo: 'mail.outside.test' })).toMatch(QUEUED);
  }, 60_000);
});
