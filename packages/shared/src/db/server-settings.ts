// PostgreSQL settings that quietly break what Postern promises, read once at start and logged as
// warnings (the process still starts: the operator may know why). fsync or synchronous_commit off
// make a 250 or an acknowledged command mean nothing after a crash; autovacuum off leaves the tables
// Postern fills without statistics, so statements keep plans made while those tables were empty —
// measured here: with the server's autovacuum off, every accept's foreign-key checks scanned
// mail.messages sequentially and the edge slowed from 512 to 256 messages/s over 36,000 messages
// (docs/deploy.md, "PostgreSQL settings").
import pg from 'pg';
import type { Logger } from 'pino';

export interface SettingRow {
  name: string;
  setting: string;
}

export interface SettingProblem extends SettingRow {
  problem: string;
}

/** The problem each setting's value causes, or null when it is fine. */
const CHECKS: Record<string, (value: string) => string | null> = {
  fsync: (value) =>
    value === 'off' ? 'fsync is off: a message answered 250 (or a command acknowledged) can be lost when the server crashes' : null,
  synchronous_commit: (value) =>
    value === 'off'
      ? 'synchronous_commit is off: a commit is reported before it is on disk, so a 250 can be lost when the server crashes'
      : null,
  full_page_writes: (value) =>
    value === 'off' ? 'full_page_writes is off: a crash during a page write can corrupt the queue beyond WAL replay' : null,
  autovacuum: (value) =>
    value === 'off'
      ? 'autovacuum is off: the mail tables are never analyzed or vacuumed, so statements keep plans made on empty tables and accepts and claims slow down as the tables grow; run ANALYZE and VACUUM yourself or turn it on'
      : null,
};

/** The rows (from pg_settings) whose value breaks a promise, with what it breaks. */
export function settingProblems(rows: readonly SettingRow[]): SettingProblem[] {
  const problems: SettingProblem[] = [];
  for (const row of rows) {
    const problem = CHECKS[row.name]?.(row.setting) ?? null;
    if (problem !== null) problems.push({ ...row, problem });
  }
  return problems;
}

/** Reads the settings above; returns the problems found, each also logged as a warning. A
 *  server that cannot be read is logged too, never thrown: this is a diagnosis, not a gate. */
export async function checkServerSettings(options: { dsn: string; logger: Logger }): Promise<string[]> {
  const client = new pg.Client({ connectionString: options.dsn, application_name: 'postern-settings-check' });
  client.on('error', () => {});
  try {
    await client.connect();
    const { rows } = await client.query<SettingRow>('SELECT name, setting FROM pg_settings WHERE name = ANY($1::text[])', [
      Object.keys(CHECKS),
    ]);
    const problems = settingProblems(rows);
    for (const { name, setting, problem } of problems) options.logger.warn({ setting: name, value: setting }, `PostgreSQL: ${problem}`);
    return problems.map(({ problem }) => problem);
  } catch (error) {
    options.logger.warn({ err: error }, 'PostgreSQL settings could not be read; fsync, synchronous_commit and autovacuum were not checked');
    return [];
  } finally {
    await client.end().catch(() => {});
  }
}
