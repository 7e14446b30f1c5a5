// Fault matrix, PostgreSQL refusing every write for 30 s (default_transaction_read_only on: an
// operator's maintenance freeze, or what a standby answers to every write when an endpoint points
// at one): it stays up and answers reads, and every INSERT or UPDATE fails with SQLSTATE 25006.
// That is the database unable to take writes for now, not a command or an outcome that is wrong:
// the stream's entries must wait (never quarantined as handling_failed), outcomes must be recorded
// once writes come back (never taken out of the way), and the account must close with zero
// duplicates and nothing lost. Meanwhile /readyz says why the processes cannot do their work.
import { describe, expect, it } from 'vitest';
import { readyzWhen, waitFor } from '../harness/index.ts';
import { type FaultCell, startTraffic, total } from './helpers/cell.ts';
import { postgresFaultCells } from './helpers/postgres-fault-cells.ts';
import { readOnlyPostgresFor } from './helpers/postgres-faults.ts';

const READ_ONLY_MS = 30_000;
const cells = postgresFaultCells();

async function quarantined(cell: FaultCell): Promise<Array<{ failure_code: string; failure_detail: string }>> {
  const { rows } = await cell.pool.query<{ failure_code: string; failure_detail: string }>(
    'SELECT failure_code, failure_detail FROM mail.malformed_commands ORDER BY id',
  );
  return rows;
}

describe('fault matrix: PostgreSQL refusing every write for 30 s', () => {
  it('during intake: the stream waits, the edge answers 4xx, and everything accepted is delivered once', async () => {
    const { cell, port, edge } = await cells.open('pg-read-only-intake');
    // Five deliveries of a pending entry (MAX_HANDLING_FAILURES) quarantine a command whose failure
    // is not the database's: 30 s of refused writes is many more than five.
    const engine = await cells.startEngine(cell);
    const traffic = startTraffic(cell, { sender: { port, concurrency: 2, paceMs: 250 }, paceMs: 150 });
    await waitFor('a fifth of the intake handed over', traffic.progress, (count) => count >= (2 * cell.n) / 5, { timeoutMs: 60_000 });
    const readOnly = readOnlyPostgresFor(cells.bench().pool, READ_ONLY_MS);
    // Meanwhile the edge and the engine say they are not ready, and why.
    for (const process of [edge, engine]) {
      const answer = await readyzWhen(process, 503, 25_000);
      expect(answer.body).toMatch(/PostgreSQL takes no writes: transaction_read_only is on/);
    }
    const faultEndedAt = await readOnly;
    const inputs = await traffic.done;
    await cells.expectRecovered(cell, inputs, faultEndedAt, 'default_transaction_read_only on for 30 s after a fifth was in');
    for (const process of [edge, engine]) {
      await readyzWhen(process, 200);
    }
    expect(await quarantined(cell)).toEqual([]);
    // The fault really met the intake: some sender had to try again.
    expect(inputs.sent.some((record) => record.tries > 1)).toBe(true);
  }, 300_000);

  it('during delivery: every outcome is recorded once writes come back, nothing is sent twice', async () => {
    const { cell, port } = await cells.open('pg-read-only-delivery', { kind: 'delay-every-reply', delayMs: 50 });
    const traffic = startTraffic(cell, { sender: { port, concurrency: 4 } });
    await cells.startEngine(cell, { MAIL_POSTGRES_STATEMENT_TIMEOUT: '2s', MAIL_LEASE_DURATION: '20s', MAIL_SMTP_SEND_DEADLINE: '15s' });
    const inputs = await traffic.done;
    await waitFor('a quarter delivered', () => total(cell.sink.accepted), (count) => count >= cell.n / 2, { timeoutMs: 60_000 });
    const faultEndedAt = await readOnlyPostgresFor(cells.bench().pool, READ_ONLY_MS);
    await cells.expectRecovered(cell, inputs, faultEndedAt, 'default_transaction_read_only on for 30 s with a quarter delivered; lease 20 s');
    expect(await quarantined(cell)).toEqual([]);
  }, 300_000);
});
