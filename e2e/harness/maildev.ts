// The SMTP sink's REST API: what was delivered, read back by the tests.
import { inject } from 'vitest';
import { type WaitOptions, waitFor } from './wait-for.ts';

export interface SinkAddress {
  address: string;
  name?: string;
}

export interface SinkEmail {
  id: string;
  subject: string;
  from: SinkAddress[];
  to: SinkAddress[];
  text?: string;
  html?: string;
  headers: Record<string, string | string[]>;
  envelope?: { from: SinkAddress | string; to: Array<SinkAddress | string> };
}

export function sinkSmtp(): { host: string; port: number } {
  const { host, smtpPort } = inject('postern').maildev;
  return { host, port: smtpPort };
}

export async function listSinkEmails(): Promise<SinkEmail[]> {
  const response = await fetch(`${inject('postern').maildev.apiUrl}/api/email`);
  if (!response.ok) throw new Error(`maildev GET /api/email answered ${response.status}`);
  return (await response.json()) as SinkEmail[];
}

/** Mails whose To: includes `recipient` (tests use unique recipients, so files never collide). */
export async function sinkEmailsTo(recipient: string): Promise<SinkEmail[]> {
  const wanted = recipient.toLowerCase();
  const all = await listSinkEmails();
  return all.filter((mail) => mail.to.some((to) => to.address.toLowerCase() === wanted));
}

export async function waitForSinkEmails(recipient: string, count: number, options?: WaitOptions): Promise<SinkEmail[]> {
  return waitFor(
    `${count} mail(s) to ${recipient} at the sink`,
    () => sinkEmailsTo(recipient),
    (mails) => mails.length >= count,
    options,
  );
}
