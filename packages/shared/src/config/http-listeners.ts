// Where each process's HTTP listener (/healthz, /readyz, /metrics; the API's /graphql) is: its
// variable and default, in one place for the configuration (env-schema.ts) and for the image's
// health check (bin/healthcheck.ts). The health check runs every 15 s in every container and must
// answer within the HEALTHCHECK's 5 s on a busy host: validating the whole environment (zod and
// the whole schema) made each probe cost about 0.9 s of CPU, and every probe of a scaled-out
// topology timed out at a load of 20 on two cores, so it reads its one variable here instead. An
// empty value counts as unset, as in loadConfig.
import { type ListenAddress, parseListenAddress } from './parse-values.ts';

export type { ListenAddress };

export const HTTP_LISTENERS = {
  core: { variable: 'MAIL_INTERNAL_HTTP_ADDR', fallback: '127.0.0.1:4001' },
  mta: { variable: 'MAIL_MTA_HTTP_ADDR', fallback: '127.0.0.1:4002' },
  api: { variable: 'MAIL_API_HTTP_ADDR', fallback: '127.0.0.1:4000' },
} as const;

export type HttpListener = keyof typeof HTTP_LISTENERS;

/** The listener's address as the process reads it (unset or empty: the default); throws on a value
 *  the process would refuse to start with. */
export function httpListenAddress(env: Record<string, string | undefined>, listener: HttpListener): ListenAddress {
  const { variable, fallback } = HTTP_LISTENERS[listener];
  const text = env[variable];
  const parsed = parseListenAddress(text === undefined || text === '' ? fallback : text);
  if (!parsed.ok) throw new Error(`${variable}: ${parsed.problem}`);
  return parsed.value;
}
