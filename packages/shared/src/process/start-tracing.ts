// OpenTelemetry tracing for one Postern process, configured the standard way: the SDK reads its
// OTEL_* variables itself (endpoint, protocol, service name, sampler, resource attributes, ...;
// docs/observability.md). It is OFF unless an exporter is named — OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT set, or OTEL_TRACES_EXPORTER set to something other than
// `none` — because the SDK alone would start exporting to localhost:4318 in every process that
// happens to have it installed. Off, nothing of the SDK is even loaded: Postern's spans go to the
// API's no-op tracer.
//
// Each app's main.ts awaits this first and only then imports the rest of the process. The
// instrumented modules (pg, ioredis, node:http) must load after the instrumentations are in
// place: ESM imports are resolved before any module body runs, so a static import of the app
// would load them too early. ESM imports are intercepted by import-in-the-middle's loader hooks,
// registered here for the instrumented modules only (in-thread, module.registerHooks, where Node
// supports it), which is the SDK's documented way for ESM without a command-line flag; CommonJS
// requires are intercepted by the SDK itself. Only traces are exported: metrics stay on /metrics
// (Prometheus) and logs on stdout (pino, with the trace ids in each line: logging/logger.ts).
import { isBuiltin, register } from 'node:module';

export type TracedApp = 'mta' | 'core' | 'api';

export interface Tracing {
  /** Spans are recorded and exported. */
  readonly enabled: boolean;
  /** What the boot log line says about it. */
  readonly summary: Record<string, string>;
  /** Exports the spans still buffered and stops; the process calls it once, before it exits. */
  shutdown(): Promise<void>;
}

const OFF: Tracing = {
  enabled: false,
  summary: { tracing: 'off (no OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_TRACES_EXPORTER)' },
  shutdown: async () => {},
};

type Env = Record<string, string | undefined>;

const set = (value: string | undefined): value is string => value !== undefined && value.trim() !== '';

/** Tracing is wanted when an exporter is named and the SDK is not disabled. */
export function tracingWanted(env: Env): boolean {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return false;
  const exporters = (env.OTEL_TRACES_EXPORTER ?? '').split(',').map((name) => name.trim()).filter(Boolean);
  // As the SDK reads the list: `none` first means no exporter, whatever follows.
  if (exporters.length > 0) return exporters[0] !== 'none';
  return set(env.OTEL_EXPORTER_OTLP_ENDPOINT) || set(env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
}

/** `postern-<app>` unless the operator named the service (OTEL_SERVICE_NAME, or service.name in
 *  OTEL_RESOURCE_ATTRIBUTES), which the SDK then reads itself. */
export function defaultServiceName(app: TracedApp, env: Env): string | undefined {
  if (set(env.OTEL_SERVICE_NAME) || /(^|,)\s*service\.name\s*=/.test(env.OTEL_RESOURCE_ATTRIBUTES ?? '')) return undefined;
  return `postern-${app}`;
}

/** The ops routes every scraper and probe calls every few seconds: not worth a trace each. */
const OPS_PATHS = new Set(['/healthz', '/readyz', '/metrics']);

async function instrumentations() {
  const [{ HttpInstrumentation }, { PgInstrumentation }, { IORedisInstrumentation }] = await Promise.all([
    import('@opentelemetry/instrumentation-http'),
    import('@opentelemetry/instrumentation-pg'),
    import('@opentelemetry/instrumentation-ioredis'),
  ]);
  return [
    new HttpInstrumentation({
      ignoreIncomingRequestHook: (request) => OPS_PATHS.has((request.url ?? '').split('?')[0] ?? ''),
    }),
    // Statements of a background loop (polls, heartbeats, lease renewals) outside any span would
    // each be a trace of their own: only statements inside a span are traced. Parameter values
    // are never recorded (enhancedDatabaseReporting stays off): they hold message bytes.
    new PgInstrumentation({ requireParentSpan: true }),
    new IORedisInstrumentation({ requireParentSpan: true }),
  ];
}

/** import-in-the-middle's hooks, for the modules the instrumentations patch and nothing else. */
async function hookEsmImports(modules: string[]): Promise<void> {
  // A built-in is imported as `node:http` or `http`: both are hooked.
  const bare = (name: string) => name.replace(/^node:/, '');
  const include = [...new Set(modules.flatMap((name) => (isBuiltin(name) ? [bare(name), `node:${bare(name)}`] : [name])))];
  const hooks = await import('import-in-the-middle/register-hooks.mjs');
  if (hooks.supportsSyncHooks()) hooks.register({ include });
  else register('import-in-the-middle/hook.mjs', import.meta.url, { data: { include } });
}

export async function startTracing(app: TracedApp, env: Env = process.env): Promise<Tracing> {
  if (!tracingWanted(env)) return OFF;
  const loaded = await instrumentations();
  await hookEsmImports(loaded.flatMap((instrumentation) => instrumentation.getModuleDefinitions().map((definition) => definition.name)));
  const { NodeSDK } = await import('@opentelemetry/sdk-node');
  const serviceName = defaultServiceName(app, env);
  const sdk = new NodeSDK({
    ...(serviceName ? { serviceName } : {}),
    instrumentations: loaded,
    metricReaders: [],
    logRecordProcessors: [],
  });
  sdk.start();
  return {
    enabled: true,
    summary: {
      tracing: 'on',
      service: env.OTEL_SERVICE_NAME ?? serviceName ?? '(OTEL_RESOURCE_ATTRIBUTES)',
      exporter: env.OTEL_TRACES_EXPORTER ?? 'otlp',
      endpoint: env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? env.OTEL_EXPORTER_OTLP_ENDPOINT ?? '(SDK default)',
      protocol: env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? env.OTEL_EXPORTER_OTLP_PROTOCOL ?? 'http/protobuf',
      sampler: env.OTEL_TRACES_SAMPLER ?? 'parentbased_always_on',
    },
    shutdown: () => sdk.shutdown(),
  };
}
