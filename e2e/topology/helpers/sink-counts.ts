// The topology's relay is a maildev container: what it received is counted through its REST API,
// by the same key the fault sink uses (X-Fault-Key, else Message-ID), so the fault matrix's account
// (e2e/faults/helpers/account.ts) counts duplicates at this relay too.
import type { RelayCounts } from '../../faults/helpers/account.ts';
import type { SinkEmail } from '../../harness/maildev.ts';

function one(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

export function sinkCounts(apiUrl: () => string): RelayCounts {
  const accepted = new Map<string, number>();
  return {
    accepted,
    async refresh() {
      const response = await fetch(`${apiUrl()}/api/email`);
      if (!response.ok) throw new Error(`maildev GET /api/email answered ${response.status}`);
      accepted.clear();
      for (const mail of (await response.json()) as SinkEmail[]) {
        const key = one(mail.headers['x-fault-key']) ?? one(mail.headers['message-id']) ?? '(no key)';
        accepted.set(key, (accepted.get(key) ?? 0) + 1);
      }
    },
  };
}
