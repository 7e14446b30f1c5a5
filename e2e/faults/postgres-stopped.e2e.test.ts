// Fault matrix, PostgreSQL stopped (docker stop) for 30 s: once while mail and commands come in, once
// while the engine is delivering. The edge answers 4xx while it cannot store, the sender retries, the
// engine waits and resumes; every engine stays alive, so the account must show zero duplicates at
// the relay and nothing lost: the engine must not re-send the sends it could not record.
import { describe, expect, it } from 'vitest';
import { waitFor } from '../harness/index.ts';
import { startTraffic, total } from './helpers/cell.ts';
import { postgresFaultCells } from './helpers/postgres-fault-cells.ts';
import { stopPostgresFor } from './helpers/postgres-faults.ts';

const OUTAGE_MS = 30_000;
const cells = postgresFaultCells();

describe('fault matrix: PostgreSQL stopped for 30 s', () => {
  it('during intake: everything that was accepted is delivered once', async () => {
    const { cell, port } = await cells.open('pg-stopped-intake');
    await cells.startEngine(cell);
    const traffic = startTraffic(cell, { sender: { port, concurrency: 2, paceMs: 250 }, paceMs: 150 });
    await waitFor('a fifth of the intake handed over', traffic.progress, (count) => count >= (2 * cell.n) / 5, { timeoutMs: 60_000 });
    const faultEndedAt = await stopPostgresFor(cells.bench().postgres, OUTAGE_MS);
    const inputs = await traffic.done;
    await cells.expectRecovered(cell, inputs, faultEndedAt, 'docker stop 30 s after a fifth was in; the sender retries every 4xx');
    // The outage really met the intake: some sender had to try again.
    expect(inputs.sent.some((record) => record.tries > 1)).toBe(true);
  }, 300_000);

  it('during delivery: everything is delivered once, nothing re-sent after the database returns', async () => {
    // 50 ms per reply: a send takes a few hundred ms, so delivery is under way when PostgreSQL stops.
    const { cell, port } = await cells.open('pg-stopped-delivery', { kind: 'delay-every-reply', delayMs: 50 });
    const traffic = startTraffic(cell, { sender: { port, concurrency: 4 } });
    // The engine starts once the stream holds the commands, so the fault falls into delivery.
    await cells.startEngine(cell, { MAIL_POSTGRES_STATEMENT_TIMEOUT: '2s', MAIL_LEASE_DURATION: '20s', MAIL_SMTP_SEND_DEADLINE: '15s' });
    const inputs = await traffic.done;
    await waitFor('a quarter delivered', () => total(cell.sink.accepted), (count) => count >= cell.n / 2, { timeoutMs: 60_000 });
    const faultEndedAt = await stopPostgresFor(cells.bench().postgres, OUTAGE_MS);
    await cells.expectRecovered(cell, inputs, faultEndedAt, 'docker stop 30 s with a quarter delivered; lease 20 s');
  }, 300_000);
});
