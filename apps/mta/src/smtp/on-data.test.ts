// DATA through the hook, without a socket (hook-session.testkit.ts): the accept faked, so that every
// reply class is reached, and the reply's id checked against what would be stored.
import { PassThrough, Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { UndecidedAcceptError } from '../accept/accept-message.ts';
import { acceptAll, type FakeEdgeOptions, FakeSession, fakeEdge, message, TEST_LIMITS } from './hook-session.testkit.ts';

async function readyForData(options: FakeEdgeOptions = {}) {
  const edge = fakeEdge(options);
  const session = new FakeSession(edge);
  await session.connect();
  expect(await session.mailFrom('sender@outside.test')).toBe('250');
  expect(await session.rcptTo('desk@postern.test')).toBe('250');
  return { edge, session };
}

const QUEUED = /^250 2\.0\.0 queued as ([0-9a-f-]{36})$/;

/** Resolves once `done` holds (checked every few ms), or fails after 5 s. */
async function until(done: () => boolean): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!done()) {
    if (Date.now() > deadline) throw new Error('condition not reached within 5 s');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('onData', () => {
  it('250 2.0.0 queued as <id>: the id of the stored message and of its Received: header', async () => {
    const { edge, session } = await readyForData();
    const reply = await session.data(message('hello'));
    const id = QUEUED.exec(reply)?.[1];
    expect(id).toBeDefined();
    expect(edge.accepted).toHaveLength(1);
    const stored = edge.accepted[0];
    expect(stored).toMatchObject({ id, envelopeFrom: 'sender@outside.test', envelopeTo: ['desk@postern.test'], targets: ['desk@inbox.test'], subject: 'hello' });
    const raw = stored?.raw.toString('utf8') ?? '';
    expect(raw).toMatch(new RegExp(`^Received: from client\\.outside\\.test \\(\\[192\\.0\\.2\\.10\\]\\)\\r\\n\\tby mx\\.postern\\.test \\(Postern\\) with ESMTP id ${id}\\r\\n\\tfor <desk@postern\\.test>;`));
    expect(raw.endsWith(message('hello'))).toBe(true);
    expect(edge.context.inData.size).toBe(0);
    expect(await edge.metric('mail_mta_messages_accepted_total')).toEqual(['1']);
  });

  it('a retry of a message already accepted is answered with the first id', async () => {
    const { edge, session } = await readyForData({ accept: async () => ({ messageId: '6f1d3c2a-0b8e-4d7f-9a65-3e2b1c0d9f87', deliveryIds: ['d'], duplicate: true }) });
    expect(await session.data(message('again'))).toBe('250 2.0.0 queued as 6f1d3c2a-0b8e-4d7f-9a65-3e2b1c0d9f87');
    expect(await edge.metric('mail_mta_duplicate_accepts_total')).toEqual(['1']);
  });

  it('552 5.3.4 past MAIL_MTA_MAX_MESSAGE_SIZE, counted on the bytes; nothing stored', async () => {
    const { edge, session } = await readyForData();
    const body = `${'x'.repeat(998)}\r\n`.repeat(Math.ceil(TEST_LIMITS.maxMessageSize / 1000) + 1);
    expect(await session.data(message('big', 0) + body)).toBe(`552 5.3.4 Message exceeds the maximum size of ${TEST_LIMITS.maxMessageSize} bytes`);
    expect(edge.accepted).toEqual([]);
  });

  it('552 5.3.4 for a header section past MAIL_MTA_MAX_HEADER_SIZE (a body as large passes); counted, nothing stored', async () => {
    const { edge, session } = await readyForData();
    const fields = `X-Filler: ${'h'.repeat(988)}\r\n`.repeat(Math.ceil(TEST_LIMITS.maxHeaderSize / 1000) + 1);
    expect(await session.data(fields + message('big header'))).toBe(`552 5.3.4 Message header exceeds the maximum size of ${TEST_LIMITS.maxHeaderSize} bytes`);
    expect(edge.accepted).toEqual([]);
    expect(await edge.metric('mail_mta_rejections_total')).toEqual(['stage=data,reason=header_too_large 1']);
    // The same bytes after the blank line are a body, and the body has no such cap.
    const next = new FakeSession(edge);
    await next.connect();
    expect(await next.mailFrom('sender@outside.test')).toBe('250');
    expect(await next.rcptTo('desk@postern.test')).toBe('250');
    expect(await next.data(message('big body') + fields)).toMatch(QUEUED);
  });

  it('554 5.6.0 for a bare LF (SMTP smuggling), answered and the connection closed', async () => {
    const { edge, session } = await readyForData();
    const reply = await session.data('Subject: s\r\n\r\nline\n.\r\nMAIL FROM:<x@y>\r\n');
    expect(reply).toBe('554 5.6.0 Message refused: bare CR or LF in DATA; lines must end with CRLF (SMTP smuggling protection)');
    expect(edge.sentAndClosed).toEqual([reply]);
    expect(edge.accepted).toEqual([]);
  });

  it('452 4.3.1 when the DATA memory budget has no room for the message now', async () => {
    const { edge, session } = await readyForData({ dataMemoryBudget: 64 });
    expect(await session.data(message('no room'))).toBe('452 4.3.1 Insufficient system storage');
    expect(edge.context.dataMemory.heldBytes).toBe(0);
    expect(edge.accepted).toEqual([]);
  });

  it('554 5.4.6 for more Received: headers than MAIL_MTA_MAX_HOPS; exactly that many is accepted', async () => {
    const { edge, session } = await readyForData();
    expect(await session.data(message('loop', TEST_LIMITS.maxHops + 1))).toBe(
      `554 5.4.6 Too many hops (more than ${TEST_LIMITS.maxHops} Received: headers): mail loop`,
    );
    expect(await session.mailFrom('sender@outside.test')).toBe('250');
    expect(await session.rcptTo('desk@postern.test')).toBe('250');
    expect(await session.data(message('far', TEST_LIMITS.maxHops))).toMatch(QUEUED);
    expect(edge.accepted).toHaveLength(1);
  });

  it('451 4.3.0 when the commit is known to have failed', async () => {
    const { session } = await readyForData({ accept: () => Promise.reject(new Error('deadlock detected')) });
    expect(await session.data(message('not stored'))).toBe('451 4.3.0 Temporary failure storing the message, try again later');
  });

  it('452 4.3.1 when the commit failed because PostgreSQL\'s disk is full (SQLSTATE 53100)', async () => {
    const diskFull = Object.assign(new Error('could not extend file "base/16384/16420": No space left on device'), { code: '53100', severity: 'ERROR' });
    const { session } = await readyForData({ accept: () => Promise.reject(diskFull) });
    expect(await session.data(message('disk full'))).toBe('452 4.3.1 Insufficient system storage: the message store is full, try again later');
  });

  it('no reply at all, the connection closed, when the edge stops with the commit undecided', async () => {
    const { edge, session } = await readyForData({ accept: (_fingerprint, stored) => Promise.reject(new UndecidedAcceptError(stored.id)) });
    let replied = false;
    void session.data(message('undecided')).then(() => {
      replied = true;
    });
    await until(() => edge.closedWithoutReply.length > 0);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(replied).toBe(false);
    expect(edge.closedWithoutReply).toEqual([session.session.id]);
    expect(edge.context.accepting.size).toBe(0);
  });

  it('451 4.4.2 when the client goes away before the final dot; nothing stored', async () => {
    const { edge, session } = await readyForData();
    const broken = new Readable({
      read() {
        this.push(Buffer.from('Subject: cut\r\n'));
        this.destroy(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }));
      },
    });
    expect(await session.data(broken)).toBe('451 4.4.2 Connection lost during DATA, nothing was stored');
    expect(edge.accepted).toEqual([]);
  });

  it('421 4.4.2 when the bytes do not all arrive within MAIL_MTA_DATA_TIMEOUT; nothing stored', async () => {
    const { edge, session } = await readyForData({ limits: { dataTimeoutMs: 500 } });
    const trickle = new PassThrough();
    trickle.write('Subject: slow\r\n');
    const reply = await session.data(trickle);
    expect(reply).toBe('421 4.4.2 DATA not completed within 1 s, closing connection');
    expect(edge.sentAndClosed).toEqual([reply]);
    expect(trickle.destroyed).toBe(true);
    expect(edge.accepted).toEqual([]);
  });

  it('past the DATA deadline with the accept already out, the reply is the accept outcome, never 421', async () => {
    let commit = () => {};
    let called = () => {};
    const acceptOut = new Promise<void>((resolve) => {
      called = resolve;
    });
    const dataTimeoutMs = 1_000;
    const { edge, session } = await readyForData({
      limits: { dataTimeoutMs },
      accept: (fingerprint, stored) =>
        new Promise((resolve) => {
          commit = () => resolve(acceptAll(fingerprint, stored));
          called();
        }),
    });
    const started = Date.now();
    const reply = session.data(message('slow commit'));
    await acceptOut;
    // The deadline passes while the commit is still out.
    await new Promise((resolve) => setTimeout(resolve, dataTimeoutMs + 100 - (Date.now() - started)));
    expect(edge.context.accepting.has(session.session.id)).toBe(true);
    commit();
    expect(await reply).toMatch(QUEUED);
    expect(edge.sentAndClosed).toEqual([]);
  });
});
