// The health check must find the process behind any PID 1 the image may get, and ask a wildcard
// bind on loopback (a container's /readyz is asked from inside the container).

import { parseListenAddress } from '@postern/shared';
import { describe, expect, it } from 'vitest';
import { commandOf, readinessUrl } from './readiness.ts';

const addr = (text: string) => {
  const parsed = parseListenAddress(text);
  if (!parsed.ok) throw new Error(parsed.problem);
  return parsed.value;
};

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

describe('readinessUrl', () => {
  const http = { mta: addr('0.0.0.0:4002'), internal: addr('[::]:4001'), api: addr('10.1.2.3:4000') };

  it("asks each service's own address, wildcards on loopback", () => {
    expect(readinessUrl(http, 'mta')).toBe('http://127.0.0.1:4002/readyz');
    expect(readinessUrl(http, 'core')).toBe('http://[::1]:4001/readyz');
    expect(readinessUrl(http, 'api')).toBe('http://10.1.2.3:4000/readyz');
  });
});
