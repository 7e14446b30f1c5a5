// The commands of the stream intake bench, and its Redis floor. Every command is schema version 2
// (docs/api/delivery-commands.asyncapi.yaml) with an idempotency key of its own, in a mix that
// goes through every branch of the intake a producer's normal traffic does: in every four, a
// rendered text mail, a rendered mail with HTML, a notification digest from its template (a list
// of items), and a login code from its template (authsession: urgent priority).
import { type DeliveryCommand, decodeCommand } from '@postern/shared';
import type { Redis } from 'ioredis';
import { COMMAND_STREAM } from '../../apps/core/src/intake/consume-stream.ts';

export { COMMAND_STREAM };

/** One stream entry's fields, as the producer XADDs them. */
export type EntryFields = [string, string, string, string];

/** The `n`-th command of a run labelled `label` (keys and recipients `<label>-<n>`). */
export function commandEntry(label: string, n: number): EntryFields {
  const key = `${label}-${n}`;
  const to = `${key}@sink.test`;
  const payloads = [
    { mode: 'rendered', subject: `Invoice ${n}`, text: `Amount due: ${n % 1000} EUR.\nThank you.` },
    { mode: 'rendered', subject: `Receipt ${n}`, text: `Paid: ${n % 1000} EUR.`, html: `<p>Paid: <b>${n % 1000} EUR</b>.</p>` },
    {
      mode: 'template',
      templateId: 'notification-digest',
      locale: 'en',
      variables: {
        name: `Reader ${n}`,
        items: [
          { title: 'New comment', url: `https://example.com/c/${n}` },
          { title: 'New follower', url: `https://example.com/f/${n}` },
        ],
        unsubscribeUrl: `https://example.com/u/${n}`,
      },
    },
    { mode: 'template', templateId: 'login-code', locale: 'en', variables: { code: String(100000 + (n % 900000)), expiresInMinutes: 10 } },
  ];
  const source = n % 4 === 3 ? 'authsession' : 'bench';
  return ['schema_version', '2', 'command', JSON.stringify({ source, idempotencyKey: key, to, payload: payloads[n % 4] })];
}

export function commandEntries(label: string, count: number): EntryFields[] {
  return Array.from({ length: count }, (_, n) => commandEntry(label, n));
}

/** The same commands as the engine decodes them (the PostgreSQL floor takes them decoded). */
export function decodedCommands(entries: readonly EntryFields[]): DeliveryCommand[] {
  return entries.map(([k1, v1, k2, v2]) => {
    const decoded = decodeCommand({ [k1]: v1, [k2]: v2 });
    if (!decoded.ok) throw new Error(`the bench's own command was refused: ${decoded.failure.code} ${decoded.failure.detail}`);
    return decoded.command;
  });
}

/** The stream emptied (its groups with it), then these entries added, a thousand per round trip. */
export async function fillStream(redis: Redis, entries: readonly EntryFields[]): Promise<void> {
  await redis.del(COMMAND_STREAM);
  for (let i = 0; i < entries.length; i += 1000) {
    const pipeline = redis.pipeline();
    for (const fields of entries.slice(i, i + 1000)) pipeline.xadd(COMMAND_STREAM, '*', ...fields);
    const results = (await pipeline.exec()) ?? [];
    const failed = results.find(([error]) => error);
    if (failed) throw failed[0];
  }
}

/** The Redis floor: a group reading the stream in XREADGROUP COUNT 100 and acknowledging each read
 *  with one XACK, nothing else. Returns how many entries it read. */
export async function redisFloor(redis: Redis, count: number): Promise<number> {
  const group = 'bench-floor';
  await redis.xgroup('CREATE', COMMAND_STREAM, group, '0');
  let read = 0;
  while (read < count) {
    const reply = (await redis.xreadgroup('GROUP', group, 'floor', 'COUNT', 100, 'STREAMS', COMMAND_STREAM, '>')) as [string, [string, string[]][]][] | null;
    const entries = reply?.[0]?.[1] ?? [];
    if (entries.length === 0) break;
    await redis.xack(COMMAND_STREAM, group, ...entries.map(([id]) => id));
    read += entries.length;
  }
  return read;
}
