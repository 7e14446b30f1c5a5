// `postern healthcheck [mta|core|api]`: the image's HEALTHCHECK. It asks the process for GET /readyz
// at the address the process's own configuration gives (the health check runs with the container's
// environment), and exits 0 on 200, 1 otherwise, with the reason on stdout, which Docker keeps in the
// health log. Without an argument the process is read from the container's command line (PID 1), so
// one HEALTHCHECK line fits every process of the one image. A one-shot command (migrate, token)
// serves no endpoint and counts as healthy while it runs. It loads the configuration module alone,
// not the package's index: a probe that runs every 15 s in every container, and must answer within
// the HEALTHCHECK's timeout on a busy host, has no use for the PostgreSQL, Redis and OpenTelemetry
// clients (about 120 ms of start-up in the image against 300).
import { readFileSync } from 'node:fs';
import { loadConfig } from '@postern/shared/config';
import { commandOf, readinessUrl, SERVICES, type Service } from './readiness.ts';

const PROBE_TIMEOUT_MS = 4_000;

async function probe(service: Service): Promise<number> {
  const url = readinessUrl(loadConfig(process.env, 'tools').http, service);
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
    console.log(`${service} ${url}: ${response.status} ${(await response.text()).slice(0, 500)}`);
    return response.status === 200 ? 0 : 1;
  } catch (error) {
    console.log(`${service} ${url}: no answer (${String((error as Error).cause ?? (error as Error).message)})`);
    return 1;
  }
}

async function healthcheck(args: string[]): Promise<number> {
  const named = args[0] ?? commandOf(readFileSync('/proc/1/cmdline', 'utf8'));
  if (named === 'migrate' || named === 'token') {
    console.log(`postern ${named} serves no endpoint: healthy while it runs`);
    return 0;
  }
  if (args.length > 1 || !SERVICES.includes(named as Service)) {
    console.log(`usage: postern healthcheck [${SERVICES.join('|')}] (this container runs: ${named ?? 'no postern command'})`);
    return 2;
  }
  return probe(named as Service);
}

// Loaded by bin/postern.ts: process.argv is node, postern.ts, "healthcheck", [service].
process.exitCode = await healthcheck(process.argv.slice(3)).catch((error: unknown) => {
  console.log(`healthcheck failed: ${error instanceof Error ? error.message : String(error)}`);
  return 1;
});
