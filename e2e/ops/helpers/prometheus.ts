// A real Prometheus for a test: the given alert rules, scraping Postern processes that run inside
// the test process. Those listen on 127.0.0.1, which a container on Docker's bridge cannot reach
// (the bridge gateway reaches only what listens on it or on 0.0.0.0), so the container shares the
// host's network namespace (`--network host`, Linux Docker engines): it scrapes 127.0.0.1:<port> as
// the test does, and serves its own API on a free loopback port.
import getPort from 'get-port';
import { GenericContainer, type StartedTestContainer, Wait } from 'testcontainers';
import { RUN_ID } from '../../harness/containers.ts';
import { images } from '../../harness/images.ts';

export interface ScrapeTarget {
  /** host:port of the process's /metrics. */
  address: string;
  /** The instance label (stable across a restart on the same port). */
  instance: string;
}

export interface PrometheusOptions {
  /** Job name (the rules match postern-*) → its targets. */
  jobs: Record<string, ScrapeTarget[]>;
  /** The alert rules file's text. */
  rules: string;
  /** Scrape and rule evaluation interval, a Prometheus duration. */
  interval: string;
}

export interface ActiveAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  state: 'pending' | 'firing';
  activeAt: string;
  value: string;
}

export interface Prometheus {
  url: string;
  image: string;
  /** Alerts pending or firing now (GET /api/v1/alerts); a resolved alert is no longer listed. */
  alerts(): Promise<ActiveAlert[]>;
  /** An instant query's samples: labels and value. */
  query(promql: string): Promise<Array<{ labels: Record<string, string>; value: number }>>;
  close(): Promise<void>;
}

function configText(options: PrometheusOptions): string {
  const jobs = Object.entries(options.jobs).map(([job, targets]) => ({
    job_name: job,
    static_configs: targets.map((target) => ({ targets: [target.address], labels: { instance: target.instance } })),
  }));
  return JSON.stringify({
    global: { scrape_interval: options.interval, scrape_timeout: options.interval, evaluation_interval: options.interval },
    rule_files: ['/etc/postern/postern-alerts.yml'],
    scrape_configs: jobs,
  });
}

async function api<T>(url: string): Promise<T> {
  const response = await fetch(url, { signal: AbortSignal.timeout(5_000) });
  const body = (await response.json()) as { status: string; data: T; error?: string };
  if (body.status !== 'success') throw new Error(`${url}: ${body.error ?? response.status}`);
  return body.data;
}

export async function startPrometheus(options: PrometheusOptions): Promise<Prometheus> {
  const port = await getPort({ host: '127.0.0.1' });
  const container: StartedTestContainer = await new GenericContainer(images.prometheus)
    .withLabels({ 'postern.e2e': RUN_ID })
    .withNetworkMode('host')
    .withCopyContentToContainer([
      // JSON is YAML: the configuration needs no YAML writer.
      { content: configText(options), target: '/etc/postern/prometheus.yml', mode: 0o644 },
      { content: options.rules, target: '/etc/postern/postern-alerts.yml', mode: 0o644 },
    ])
    .withCommand([
      '--config.file=/etc/postern/prometheus.yml',
      '--storage.tsdb.path=/tmp/prometheus',
      `--web.listen-address=127.0.0.1:${port}`,
    ])
    .withWaitStrategy(Wait.forLogMessage(/Server is ready to receive web requests/))
    .withStartupTimeout(60_000)
    .start();
  const url = `http://127.0.0.1:${port}`;
  console.log(`[e2e] prometheus: image ${images.prometheus}, container ${container.getId().slice(0, 12)} at ${url} (host network)`);
  return {
    url,
    image: images.prometheus,
    async alerts() {
      return (await api<{ alerts: ActiveAlert[] }>(`${url}/api/v1/alerts`)).alerts;
    },
    async query(promql) {
      const data = await api<{ result: Array<{ metric: Record<string, string>; value: [number, string] }> }>(
        `${url}/api/v1/query?query=${encodeURIComponent(promql)}`,
      );
      return data.result.map((sample) => ({ labels: sample.metric, value: Number(sample.value[1]) }));
    },
    async close() {
      await container.stop({ remove: true, removeVolumes: true });
    },
  };
}
