// The DATA memory budget (MAIL_MTA_DATA_MEMORY_BUDGET): bytes held for messages in flight across
// all sessions. A message that would push the total past it gets 452 4.3.1 after the final dot
// (temporary: the sender retries), the message holding the bytes is accepted, a retry once they
// are given back is accepted, and the bytes come back whatever ends a DATA phase.
import { createAlias, createDomain } from '@postern/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Edge } from '../../apps/mta/src/edge.ts';
import { createTestDatabase, type TestDatabase, waitFor } from '../harness/index.ts';
import { metricsText, openSession, startTestEdge } from './helpers/edge.ts';
import { type SmtpTestClient, sendMail } from './helpers/smtp-client.ts';

const BUDGET = 100 * 1024;
let db: TestDatabase;
let edge: Edge;

beforeAll(async () => {
  db = await createTestDatabase('mta-memory-budget');
  await createDomain(db.pool, 'postern.test');
  await createAlias(db.pool, { domain: 'postern.test', localPart: 'one', kind: 'forward', targets: ['one@inbox.test'] });
  edge = await startTestEdge(db.dsn, { MAIL_MTA_MAX_MESSAGE_SIZE: '64KiB', MAIL_MTA_DATA_MEMORY_BUDGET: '100KiB' });
});

afterAll(async () => {
  await edge?.stop();
  await db?.drop();
});

async function bytesInFlight(): Promise<number> {
  const match = /^mail_mta_data_bytes_in_flight(?:\{[^}]*\})? (\d+)$/m.exec(await metricsText(edge));
  if (!match) throw new Error('mail_mta_data_bytes_in_flight not exported');
  return Number(match[1]);
}

const waitForBytesInFlight = (expected: number) =>
  waitFor(`mail_mta_data_bytes_in_flight to be ${expected}`, bytesInFlight, (held) => held === expected);

// smtp-server holds back the last few bytes of what it has read (at most "\r\n.\r" of a possible
// end of data) until it sees what follows, so a message without its final dot is counted short.
const TERMINATOR_LOOKAHEAD = 4;

/** Waits until `sent` bytes of a DATA phase under way are held, and returns the figure. */
const waitForHeld = (sent: number, alsoHeld = 0) =>
  waitFor(
    `mail_mta_data_bytes_in_flight to reach ${alsoHeld} + ${sent} (less at most ${TERMINATOR_LOOKAHEAD})`,
    bytesInFlight,
    (held) => held <= alsoHeld + sent && held >= alsoHeld + sent - TERMINATOR_LOOKAHEAD,
  );

/** About `kib` KiB of proper CRLF lines under a Subject header; no line starts with a dot. */
function messageOf(subject: string, kib: number): string {
  return `Subject: ${subject}\r\n\r\n${`${'x'.repeat(1022)}\r\n`.repeat(kib)}`;
}

/** MAIL, RCPT, DATA answered 354: the session is inside DATA. */
async function enterData(client: SmtpTestClient, mailParams = ''): Promise<void> {
  expect((await client.command(`MAIL FROM:<sender@outside.test>${mailParams}`)).code).toBe(250);
  expect((await client.command('RCPT TO:<one@postern.test>')).code).toBe(250);
  expect((await client.command('DATA')).code).toBe(354);
}

async function storedSubjects(): Promise<string[]> {
  const { rows } = await db.pool.query('SELECT subject FROM mail.messages ORDER BY received_at, subject');
  return rows.map((row) => row.subject as string);
}

describe('DATA memory budget', () => {
  it('exports the budget and starts with nothing in flight', async () => {
    expect(await metricsText(edge)).toMatch(new RegExp(`^mail_mta_data_memory_budget_bytes(?:\\{[^}]*\\})? ${BUDGET}$`, 'm'));
    expect(await bytesInFlight()).toBe(0);
  });

  it('a second DATA that would pass the budget gets 452 4.3.1; the first is accepted; the retry afterwards too', async () => {
    const first = await openSession(edge);
    await enterData(first);
    const firstMessage = messageOf('first', 60);
    await first.write(firstMessage);
    // The first message's bytes are held (not committed: no final dot yet).
    const heldForFirst = await waitForHeld(firstMessage.length);

    // SIZE= is an early hint against what is left now (100 KiB - ~60 KiB), never an allowance.
    const hinted = await openSession(edge);
    expect((await hinted.command('MAIL FROM:<sender@outside.test> SIZE=50000')).raw).toBe('452 4.3.1 Insufficient system storage');
    expect((await hinted.command('MAIL FROM:<sender@outside.test> SIZE=70000')).code).toBe(552);
    expect((await hinted.command('MAIL FROM:<sender@outside.test> SIZE=30000')).code).toBe(250);
    await hinted.quit();

    const second = await openSession(edge);
    await enterData(second);
    const secondMessage = messageOf('second', 60);
    await second.write(`${secondMessage}.\r\n`);
    expect((await second.readReply()).raw).toBe('452 4.3.1 Insufficient system storage');
    // Refused and given back: only the first message is held.
    expect(await bytesInFlight()).toBe(heldForFirst);

    await first.write('.\r\n');
    expect((await first.readReply()).raw).toMatch(/^250 2\.0\.0 queued as /);
    await first.quit();
    await waitForBytesInFlight(0);

    // The same session retries, as a sender does after a 4xx.
    const retry = await sendMail(second, { from: 'sender@outside.test', to: ['one@postern.test'], message: secondMessage });
    expect(retry.final?.raw).toMatch(/^250 2\.0\.0 queued as /);
    await second.quit();
    expect(await storedSubjects()).toEqual(['first', 'second']);
    expect(await bytesInFlight()).toBe(0);
  });

  it('gives the bytes back when a client vanishes in the middle of DATA, and stores nothing', async () => {
    const before = await storedSubjects();
    const client = await openSession(edge);
    await enterData(client);
    const partial = messageOf('vanished', 40);
    await client.write(partial);
    await waitForHeld(partial.length);
    client.close();
    await waitForBytesInFlight(0);
    expect(await storedSubjects()).toEqual(before);
  });
});
