// `postern healthcheck [mta|core|api]`: the image's HEALTHCHECK. It asks the process for GET /readyz
// at the address the process's own configuration gives (the health check runs with the container's
// environment), and exits 0 on 200, 1 otherwise, with the reason on stdout, which Docker keeps in the
// health log. Without an argument the process is read from the container's command line (PID 1), so
// one HEALTHCHECK line fits every process of the one image. A one-shot command (migrate, token,
// secrets: ONE_SHOT_COMMANDS) serves no endpoint and counts as healthy while it runs. It reads the one variable of its listener
// (packages/shared/src/config/http-listeners.ts, the same as the process reads), not the whole
// configuration nor the package's index: a probe that runs every 15 s in every container, and must
// answer within the HEALTHCHECK's 5 s on a busy host, has no use for the PostgreSQL, Redis and
// OpenTelemetry clients, nor for validating every variable (with zod and the whole schema: about
// 0.9 s of CPU per probe in the image against 0.4 now; at a load of 20 on two cores every probe
// timed out). It asks with node:http (packages/shared/src/http/readyz-client.ts), not fetch.
import { readFileSync } from 'node:fs';
import { httpListenAddress } from '@postern/shared/http-listeners';
import { askReadyz, readinessUrl } from '@postern/shared/readyz-client';
import { commandOf, ONE_SHOT_COMMANDS, SERVICES, type Service } from './readiness.ts';

const PROBE_TIMEOUT_MS = 4_000;

async function probe(service: Service): Promise<number> {
  const url = readinessUrl(httpListenAddress(process.env, service));
  try {
    const response = await askReadyz(url, PROBE_TIMEOUT_MS);
    console.log(`${service} ${url}: ${response.status} ${response.body}`);
    return response.status === 200 ? 0 : 1;
  } catch (error) {
    console.log(`${service} ${url}: no answer (${(error as Error).message})`);
    return 1;
  }
}

async function healthcheck(args: string[]): Promise<number> {
  const named = args[0] ?? commandOf(readFileSync('/proc/1/cmdline', 'utf8'));
  if (named !== null && ONE_SHOT_COMMANDS.includes(named)) {
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
