import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { checkServerSettings, settingProblems } from './server-settings.ts';

describe('PostgreSQL settings that break a promise', () => {
  it('names fsync, synchronous_commit, full_page_writes and autovacuum when they are off', () => {
    const problems = settingProblems([
      { name: 'autovacuum', setting: 'off' },
      { name: 'fsync', setting: 'off' },
      { name: 'full_page_writes', setting: 'off' },
      { name: 'synchronous_commit', setting: 'off' },
    ]);
    expect(problems.map((problem) => problem.name)).toEqual(['autovacuum', 'fsync', 'full_page_writes', 'synchronous_commit']);
    expect(problems[0]?.problem).toMatch(/never analyzed/);
    expect(problems[3]?.problem).toMatch(/250 can be lost/);
  });

  it('says nothing of a server set up for durable mail', () => {
    const rows = [
      { name: 'autovacuum', setting: 'on' },
      { name: 'fsync', setting: 'on' },
      { name: 'full_page_writes', setting: 'on' },
      // local and remote_write still flush locally before the commit is reported.
      { name: 'synchronous_commit', setting: 'local' },
      { name: 'synchronous_commit', setting: 'remote_write' },
    ];
    expect(settingProblems(rows)).toEqual([]);
  });

  it('logs, never throws, when the server cannot be read', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => lines.push(line) });
    const problems = await checkServerSettings({ dsn: 'postgres://nobody@127.0.0.1:1/none', logger });
    expect(problems).toEqual([]);
    expect(lines.join('')).toMatch(/settings could not be read/);
  });
});
