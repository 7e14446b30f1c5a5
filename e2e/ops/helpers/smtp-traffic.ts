// Steady senders at the edge, one short session after another, so the edge's counters move as they
// would under real traffic and the ratios the alerts watch have something to be a ratio of:
//   RCPT traffic     EHLO, MAIL FROM, one RCPT, QUIT: the share of RCPTs answered 451 (lookups);
//   message traffic  the same with DATA and a short message: the share of accepts that failed.
// Every reply is counted by code ('none' when the session failed before it was answered).
import { setTimeout as delay } from 'node:timers/promises';
import { SmtpTestClient, sendMail, simpleMessage } from '../../mta/helpers/smtp-client.ts';

export interface SmtpTraffic {
  /** The replies counted (the RCPT's, or the end of DATA's) by code. */
  counts: Map<string, number>;
  stop(): Promise<void>;
}

/** One session: greeting and EHLO, then `transaction`, whose reply code is the session's. */
async function oneSession(port: number, transaction: (client: SmtpTestClient) => Promise<string>): Promise<string> {
  let client: SmtpTestClient | null = null;
  try {
    const opened = await SmtpTestClient.connect(port);
    client = opened.client;
    if (opened.greeting.code !== 220) return 'none';
    if ((await client.command('EHLO traffic.alerts.test')).code !== 250) return 'none';
    return await transaction(client);
  } catch {
    return 'none';
  } finally {
    await client?.quit().catch(() => {});
  }
}

function startTraffic(
  port: number,
  options: { senders: number; pauseMs: number },
  transaction: (client: SmtpTestClient, serial: number) => Promise<string>,
): SmtpTraffic {
  const counts = new Map<string, number>();
  let running = true;
  let serial = 0;
  const sender = async () => {
    while (running) {
      serial += 1;
      const current = serial;
      const code = await oneSession(port, (client) => transaction(client, current));
      counts.set(code, (counts.get(code) ?? 0) + 1);
      await delay(options.pauseMs);
    }
  };
  const done = Promise.all(Array.from({ length: options.senders }, sender));
  return {
    counts,
    async stop() {
      running = false;
      await done;
    },
  };
}

/** One sender of RCPTs; counts the RCPT replies. */
export function startRcptTraffic(port: number, rcpt: string, pauseMs: number): SmtpTraffic {
  return startTraffic(port, { senders: 1, pauseMs }, async (client) => {
    if ((await client.command('MAIL FROM:<traffic@outside.test>')).code !== 250) return 'none';
    return String((await client.command(`RCPT TO:<${rcpt}>`)).code);
  });
}

/** `senders` senders of whole messages side by side; counts the replies to the end of DATA. */
export function startMessageTraffic(port: number, rcpt: string, options: { senders: number; pauseMs: number }): SmtpTraffic {
  return startTraffic(port, options, async (client, serial) => {
    const sent = await sendMail(client, { from: 'traffic@outside.test', to: [rcpt], message: simpleMessage(`traffic ${serial}`) });
    return sent.final ? String(sent.final.code) : 'none';
  });
}
