// Steady senders at the edge: one short session after another (EHLO, MAIL FROM, one RCPT, QUIT), so
// the edge's RCPT outcome counters move as they would under real traffic and the ratio of 451
// replies the lookups alert watches has something to be a ratio of. Every reply code is counted.
import { setTimeout as delay } from 'node:timers/promises';
import { SmtpTestClient } from '../../mta/helpers/smtp-client.ts';

export interface RcptTraffic {
  /** RCPT replies by code ('none' when the session failed before the RCPT was answered). */
  counts: Map<string, number>;
  stop(): Promise<void>;
}

async function oneRcpt(port: number, rcpt: string): Promise<string> {
  let client: SmtpTestClient | null = null;
  try {
    const opened = await SmtpTestClient.connect(port);
    client = opened.client;
    if (opened.greeting.code !== 220) return 'none';
    if ((await client.command('EHLO traffic.alerts.test')).code !== 250) return 'none';
    if ((await client.command('MAIL FROM:<traffic@outside.test>')).code !== 250) return 'none';
    return String((await client.command(`RCPT TO:<${rcpt}>`)).code);
  } catch {
    return 'none';
  } finally {
    await client?.quit().catch(() => {});
  }
}

export function startRcptTraffic(port: number, rcpt: string, pauseMs: number): RcptTraffic {
  const counts = new Map<string, number>();
  let running = true;
  const done = (async () => {
    while (running) {
      const code = await oneRcpt(port, rcpt);
      counts.set(code, (counts.get(code) ?? 0) + 1);
      await delay(pauseMs);
    }
  })();
  return {
    counts,
    async stop() {
      running = false;
      await done;
    },
  };
}
