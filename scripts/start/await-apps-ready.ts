// `npm start` says "Postern is running" only once every app it started answers /readyz 200. Said as
// the processes were spawned, the line came 2–3 s before they listened, and a newcomer who tried
// the API or the edge at once was refused. An app still not ready after a while is named with its
// last answer — its /readyz reasons, or why nobody answered — and is still waited for: PostgreSQL
// or a restart (start.ts restarts an app that dies) may bring it up later.
import { HTTP_LISTENERS, type HttpListener, httpListenAddress } from '@postern/shared/http-listeners';
import { askReadyz, readinessUrl } from '@postern/shared/readyz-client';

export interface Waiting {
  app: string;
  url: string;
  /** The last answer: "503 {...}", or why there was none ("ECONNREFUSED", "no answer within 2000 ms"). */
  last: string;
}

export interface AwaitAppsReadyOptions {
  /** The apps started (apps/<name>); those without an HTTP listener are not waited for. */
  apps: string[];
  /** The apps' environment: where each listens. */
  env: Record<string, string | undefined>;
  /** true: stop waiting (npm start is stopping). */
  stopped: () => boolean;
  /** Called after every warnEveryMs still waiting, with the apps not ready yet. */
  onSlow: (waiting: Waiting[], waitedMs: number) => void;
  intervalMs?: number;
  askTimeoutMs?: number;
  warnEveryMs?: number;
}

function hasListener(app: string): app is HttpListener {
  return Object.hasOwn(HTTP_LISTENERS, app);
}

/** The URL each app answers /readyz at; an app whose address does not parse is left out (it refuses
 *  to start and says why itself). */
export function readyzUrls(apps: string[], env: Record<string, string | undefined>): Map<string, string> {
  const urls = new Map<string, string>();
  for (const app of apps) {
    if (!hasListener(app)) continue;
    try {
      urls.set(app, readinessUrl(httpListenAddress(env, app)));
    } catch {
      // Its own start fails on the same value, with the variable's name.
    }
  }
  return urls;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves true once every app answered /readyz 200 (each only needs to once), false if stopped first. */
export async function awaitAppsReady(options: AwaitAppsReadyOptions): Promise<boolean> {
  const { intervalMs = 200, askTimeoutMs = 2_000, warnEveryMs = 30_000 } = options;
  const pending = readyzUrls(options.apps, options.env);
  const last = new Map<string, string>();
  const startedAt = Date.now();
  let warnAt = startedAt + warnEveryMs;
  while (!options.stopped()) {
    await Promise.all(
      [...pending].map(async ([app, url]) => {
        try {
          const answer = await askReadyz(url, askTimeoutMs);
          if (answer.status === 200) pending.delete(app);
          else last.set(app, `${answer.status} ${answer.body}`.trim());
        } catch (error) {
          last.set(app, (error as NodeJS.ErrnoException).code ?? (error as Error).message);
        }
      }),
    );
    if (pending.size === 0) return true;
    if (Date.now() >= warnAt) {
      warnAt += warnEveryMs;
      options.onSlow(
        [...pending].map(([app, url]) => ({ app, url, last: last.get(app) ?? 'not asked yet' })),
        Date.now() - startedAt,
      );
    }
    await sleep(intervalMs);
  }
  return false;
}
