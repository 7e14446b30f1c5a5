// The health check must find the process behind any PID 1 the image may get, ask the listener the
// process's own configuration gives, and leave a container running a one-shot command healthy.

import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { loadConfig } from '@postern/shared';
import { httpListenAddress } from '@postern/shared/http-listeners';
import { describe, expect, it } from 'vitest';
import { commandOf, ONE_SHOT_COMMANDS, SERVICES } from './readiness.ts';

describe('commandOf', () => {
  it('reads the command after postern.ts, with or without an init in front, or after the postern symlink', () => {
    expect(commandOf('/usr/local/bin/node\0/opt/postern/bin/postern.ts\0mta\0')).toBe('mta');
    expect(commandOf('/sbin/docker-init\0--\0/usr/local/bin/node\0/opt/postern/bin/postern.ts\0core\0')).toBe('core');
    expect(commandOf('node\0/usr/local/bin/postern\0api\0')).toBe('api');
  });

  it('is null for anything else', () => {
    expect(commandOf('/bin/sh\0-c\0sleep 1\0')).toBeNull();
    expect(commandOf('node\0/opt/postern-other/bin/not-postern.ts\0mta\0')).toBeNull();
  });
});

describe('httpListenAddress (what the health check asks)', () => {
  const base = { MAIL_POSTGRES_PRIMARY_DSN: 'postgres://x@127.0.0.1/x' };

  it("is each process's own listener as its configuration reads it, set, empty or unset", () => {
    for (const env of [
      base,
      { ...base, MAIL_MTA_HTTP_ADDR: ':5002', MAIL_INTERNAL_HTTP_ADDR: '[::]:5001', MAIL_API_HTTP_ADDR: '10.1.2.3:5000' },
      { ...base, MAIL_MTA_HTTP_ADDR: '', MAIL_INTERNAL_HTTP_ADDR: '', MAIL_API_HTTP_ADDR: '' },
    ]) {
      const http = loadConfig(env, 'tools').http;
      expect(httpListenAddress(env, 'mta')).toEqual(http.mta);
      expect(httpListenAddress(env, 'core')).toEqual(http.internal);
      expect(httpListenAddress(env, 'api')).toEqual(http.api);
    }
  });

  it('refuses a value the process would refuse, naming the variable', () => {
    expect(() => httpListenAddress({ MAIL_API_HTTP_ADDR: 'nowhere' }, 'api')).toThrow(/MAIL_API_HTTP_ADDR: "nowhere" is not host:port/);
  });
});

describe('postern healthcheck of a one-shot command', () => {
  const postern = path.join(import.meta.dirname, 'postern.ts');
  const run = (...args: string[]) => execFileSync(process.execPath, [postern, ...args], { encoding: 'utf8', env: { PATH: process.env.PATH } });

  it('is healthy for migrate, token and secrets, which serve no endpoint', () => {
    for (const command of ['migrate', 'token', 'secrets']) {
      expect(run('healthcheck', command)).toBe(`postern ${command} serves no endpoint: healthy while it runs\n`);
    }
  });

  it('knows every command postern has: a process it probes, a one-shot, or the health check itself', () => {
    const commands = [...run('help').matchAll(/^ {2}postern (\S+)/gm)].map((match) => match[1]);
    expect(commands).toContain('secrets');
    for (const command of commands) {
      expect([...SERVICES, ...ONE_SHOT_COMMANDS, 'healthcheck'], command).toContain(command);
    }
  });
});
