// Which process a container runs and where its /readyz answers: the pure half of
// `postern healthcheck` (bin/healthcheck.ts), apart so it can be tested without a container.
import type { ListenAddress } from '@postern/shared/http-listeners';

export const SERVICES = ['mta', 'core', 'api'] as const;
export type Service = (typeof SERVICES)[number];

/**
 * The command after `postern.ts` (or `postern`) in a NUL-separated command line such as
 * /proc/1/cmdline, if any: `node /opt/postern/bin/postern.ts mta`, also behind `docker run --init`.
 */
export function commandOf(cmdline: string): string | null {
  const words = cmdline.split('\0');
  const at = words.findIndex((word) => /(?:^|\/)postern(?:\.ts)?$/.test(word));
  return at === -1 ? null : (words[at + 1] ?? null);
}

/** Where a service listening on `addr` answers /readyz from inside its container: a wildcard bind is asked on loopback. */
export function readinessUrl(addr: ListenAddress): string {
  const host = addr.host === '0.0.0.0' ? '127.0.0.1' : addr.host === '::' ? '::1' : addr.host;
  return `http://${host.includes(':') ? `[${host}]` : host}:${addr.port}/readyz`;
}
