// What `postern` says to a person who mistypes: an unknown command and an option placed before the
// command are told apart, both exit 2 with the usage, and neither starts anything.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const postern = path.join(import.meta.dirname, 'postern.ts');

function run(...args: string[]): { status: number; stderr: string } {
  try {
    execFileSync(process.execPath, [postern, ...args], { stdio: 'pipe', encoding: 'utf8', env: { PATH: process.env.PATH } });
    return { status: 0, stderr: '' };
  } catch (error) {
    const failed = error as { status: number; stderr: string };
    return { status: failed.status, stderr: failed.stderr };
  }
}

describe('postern', () => {
  it('names an option given before the command as an option', () => {
    const { status, stderr } = run('--verbose', 'token', 'list');
    expect(status).toBe(2);
    expect(stderr).toMatch(/^postern: unknown option "--verbose" \(options go after the command\)\nusage: postern <command>/);
  });

  it('names an unknown command as a command', () => {
    const { status, stderr } = run('bogus');
    expect(status).toBe(2);
    expect(stderr).toMatch(/^postern: unknown command "bogus"\nusage:/);
  });
});
