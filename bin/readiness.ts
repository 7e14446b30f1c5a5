// Which process a container runs: the pure half of `postern healthcheck` (bin/healthcheck.ts),
// apart so it can be tested without a container. Where its /readyz answers is
// packages/shared/src/http/readyz-client.ts.

export const SERVICES = ['mta', 'core', 'api'] as const;
export type Service = (typeof SERVICES)[number];

/** The `postern` commands that run to an end and serve no endpoint: a container running one is
 *  healthy while it runs (`postern secrets reseal` on a large database can outlast the first probe). */
export const ONE_SHOT_COMMANDS: readonly string[] = ['migrate', 'token', 'secrets'];

/**
 * The command after `postern.ts` (or `postern`) in a NUL-separated command line such as
 * /proc/1/cmdline, if any: `node /opt/postern/bin/postern.ts mta`, also behind `docker run --init`.
 */
export function commandOf(cmdline: string): string | null {
  const words = cmdline.split('\0');
  const at = words.findIndex((word) => /(?:^|\/)postern(?:\.ts)?$/.test(word));
  return at === -1 ? null : (words[at + 1] ?? null);
}
