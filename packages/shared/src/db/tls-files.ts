// The DSN's TLS files (`sslrootcert`, `sslcert`, `sslkey`) for a pool's connections. Given the DSN
// as a connection string, node-postgres parses it again for every new connection and reads the
// files each time: a CA added to the file is trusted from the next connection on, without a
// restart (docs/deploy.md, "TLS to PostgreSQL and Redis"). But a file missing for a moment (removed
// and written again instead of renamed over, a configuration tool's redeploy) made that parse
// throw inside pg-pool, outside any request: an uncaught exception, the process gone.
//
// Here the DSN is parsed once (by the same parser, pg-connection-string) and each file is read
// again whenever a connection is made, as before; a file that cannot be read keeps the content
// read last, with one warning until it can be read again. A CA file removed for good therefore
// leaves the processes trusting what it held: removing trust takes a new file, not none.
import { readFileSync } from 'node:fs';
import type pg from 'pg';
import { parse } from 'pg-connection-string';
import type { Logger } from 'pino';

const FILES = { ca: 'sslrootcert', cert: 'sslcert', key: 'sslkey' } as const;

/** The connection settings of `dsn` (as pg would parse them itself), with its TLS files read
 *  again for each connection. Throws, as pg would, when a file cannot be read now. */
export function connectionSettings(dsn: string, logger: Logger): pg.ClientConfig {
  const parsed = parse(dsn);
  if (typeof parsed.ssl !== 'object' || parsed.ssl === null) return parsed as pg.ClientConfig;
  const ssl: Record<string, unknown> = { ...parsed.ssl };
  for (const [field, parameter] of Object.entries(FILES)) {
    const file = parsed[parameter];
    if (typeof file !== 'string' || file === '') continue;
    let last = ssl[field];
    let failing = false;
    // pg's connection copies the ssl settings into tls.connect's options as it connects
    // (Object.assign, and `key` by name): the getter runs once per connection.
    Object.defineProperty(ssl, field, {
      enumerable: true,
      configurable: true,
      get() {
        try {
          last = readFileSync(file, 'utf8');
          if (failing) logger.info({ file, parameter }, 'the DSN\'s TLS file can be read again; new PostgreSQL connections use it');
          failing = false;
        } catch (error) {
          if (!failing) {
            logger.warn(
              { file, parameter, err: error },
              `the DSN's ${parameter} file cannot be read; new PostgreSQL connections use its content as last read. Replace it by renaming a new file over it, never by removing it first`,
            );
          }
          failing = true;
        }
        return last;
      },
    });
  }
  return { ...parsed, ssl } as pg.ClientConfig;
}
