// The health check must find the process behind any PID 1 the image may get, and ask the
// listener the process's own configuration gives.

import { loadConfig } from '@postern/shared';
import { httpListenAddress } from '@postern/shared/http-listeners';
import { describe, expect, it } from 'vitest';
import { commandOf } from './readiness.ts';

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
