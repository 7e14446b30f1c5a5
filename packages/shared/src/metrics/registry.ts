// One Prometheus registry per process: Node's default metrics plus what each app registers.
import client from 'prom-client';

export type Registry = client.Registry;
export { client as prometheus };

export function createMetricsRegistry(app: string): client.Registry {
  const registry = new client.Registry();
  registry.setDefaultLabels({ app });
  client.collectDefaultMetrics({ register: registry });
  return registry;
}
