// The fault matrix's GraphQL channel: a service calling sendEmail for each of its commands, as a
// producer with an outbox would, with the fault cells' commands (stream-producer.ts) and source:
// every call is made again, with the same idempotency key, until the API answers SendEmailSuccess
// or the deadline passes. A success is a command the engine owes an outcome for, counted by the
// account like an acknowledged XADD (same source, keyed by the idempotency key); every other
// answer is kept, so a cell can say what the caller was told while the fault lasted.
import { setTimeout as delay } from 'node:timers/promises';
import { gql } from '../../api/helpers/api.ts';
import { faultCommand, type XaddRecord } from './stream-producer.ts';

const SEND = `mutation($input: SendEmailInput!) {
  sendEmail(input: $input) { __typename ... on SendEmailSuccess { data { duplicate } } ... on Error { message } }
}`;

export interface ApiSendRecord extends XaddRecord {
  /** Every answer other than SendEmailSuccess, in order: the HTTP status and the errors' codes and messages. */
  refusals: string[];
}

/** The cell's commands `api-<i>` (keys `<cell>-a<i>`), sent through sendEmail one after another. */
export async function sendAllThroughApi(
  url: string,
  token: string,
  cell: string,
  n: number,
  options: { deadlineMs: number; paceMs?: number; onAccepted?: () => void },
): Promise<ApiSendRecord[]> {
  const deadline = Date.now() + options.deadlineMs;
  const records: ApiSendRecord[] = [];
  for (let i = 0; i < n; i++) {
    const command = faultCommand(cell, i, 'a');
    const record: ApiSendRecord = { command, entryId: null, at: 0, refusals: [] };
    const input = { to: command.to, idempotencyKey: command.idempotencyKey, rendered: { subject: `${cell} ${command.idempotencyKey}`, text: `Command ${command.idempotencyKey}.` } };
    while (record.entryId === null && Date.now() < deadline) {
      try {
        const answer = await gql<{ sendEmail: { __typename: string } | null }>(url, token, SEND, { input });
        if (answer.body.data?.sendEmail?.__typename === 'SendEmailSuccess') {
          record.entryId = 'api';
          break;
        }
        const errors = (answer.body.errors ?? []).map((error) => `${String(error.extensions?.code ?? '')} ${error.message}`.trim());
        record.refusals.push(`HTTP ${answer.status}: ${errors.join('; ') || JSON.stringify(answer.body.data)}`.slice(0, 400));
      } catch (error) {
        record.refusals.push(`no answer: ${(error as Error).message}`.slice(0, 400));
      }
      await delay(300);
    }
    record.at = Date.now();
    if (record.entryId !== null) options.onAccepted?.();
    records.push(record);
    if (options.paceMs) await delay(options.paceMs);
  }
  return records;
}
