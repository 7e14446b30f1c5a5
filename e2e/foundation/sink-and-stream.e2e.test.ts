// The harness itself: the SMTP sink receives real mail and shows it through its REST API, and the
// Redis Stream round trip the engine relies on (XADD, XREADGROUP, XACK) works against real Redis.
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { sinkSmtp, waitForSinkEmails } from '../harness/index.ts';

describe('SMTP sink container', () => {
  it('a mail sent with nodemailer is read back through the sink API', async () => {
    const recipient = `harness-${randomUUID()}@example.test`;
    const transport = nodemailer.createTransport({ ...sinkSmtp(), secure: false, ignoreTLS: true });
    const info = await transport.sendMail({
      from: 'postern@example.test',
      to: recipient,
      subject: 'harness check',
      text: 'hello from the e2e harness',
    });
    transport.close();
    expect(info.accepted).toEqual([recipient]);

    const [mail] = await waitForSinkEmails(recipient, 1);
    expect(mail?.subject).toBe('harness check');
    expect(mail?.text?.trim()).toBe('hello from the e2e harness');
  });
});

describe('Redis Stream container', () => {
  let redis: Redis;
  const stream = `e2e:harness:${randomUUID()}`;

  beforeAll(() => {
    const { host, port } = inject('postern').redis;
    redis = new Redis({ host, port, maxRetriesPerRequest: 1 });
  });
  afterAll(async () => {
    await redis.del(stream);
    await redis.quit();
  });

  it('XADD / XREADGROUP / XACK round trip', async () => {
    await redis.xgroup('CREATE', stream, 'engines', '$', 'MKSTREAM');
    const id = await redis.xadd(stream, '*', 'v', '1', 'body', '{"hello":"world"}');

    const read = (await redis.xreadgroup('GROUP', 'engines', 'engine-1', 'COUNT', 10, 'BLOCK', 2000, 'STREAMS', stream, '>')) as
      | Array<[string, Array<[string, string[]]>]>
      | null;
    expect(read?.[0]?.[1]).toEqual([[id, ['v', '1', 'body', '{"hello":"world"}']]]);

    const pendingBefore = (await redis.xpending(stream, 'engines')) as [number, ...unknown[]];
    expect(pendingBefore[0]).toBe(1);
    expect(await redis.xack(stream, 'engines', id as string)).toBe(1);
    const pendingAfter = (await redis.xpending(stream, 'engines')) as [number, ...unknown[]];
    expect(pendingAfter[0]).toBe(0);
  });
});
