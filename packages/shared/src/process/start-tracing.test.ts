import { describe, expect, it } from 'vitest';
import { defaultServiceName, startTracing, tracingWanted } from './start-tracing.ts';

describe('tracingWanted: off unless an exporter is named', () => {
  it.each([
    [{}, false],
    [{ OTEL_SERVICE_NAME: 'x', OTEL_TRACES_SAMPLER: 'always_on' }, false],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }, true],
    [{ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://collector:4318/v1/traces' }, true],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: '  ' }, false],
    [{ OTEL_TRACES_EXPORTER: 'console' }, true],
    [{ OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }, false],
    [{ OTEL_TRACES_EXPORTER: 'otlp,none' }, true],
    [{ OTEL_TRACES_EXPORTER: 'none,otlp' }, false],
    [{ OTEL_SDK_DISABLED: 'true', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }, false],
  ])('%j -> %s', (env, wanted) => {
    expect(tracingWanted(env)).toBe(wanted);
  });
});

describe('defaultServiceName', () => {
  it('is postern-<app> unless the operator named the service', () => {
    expect(defaultServiceName('mta', {})).toBe('postern-mta');
    expect(defaultServiceName('core', { OTEL_SERVICE_NAME: 'mail-engine' })).toBeUndefined();
    expect(defaultServiceName('api', { OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment=prod,service.name=gql' })).toBeUndefined();
    expect(defaultServiceName('api', { OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment=prod' })).toBe('postern-api');
  });
});

describe('startTracing', () => {
  it('off, it loads nothing and stops at once', async () => {
    const tracing = await startTracing('mta', {});
    expect(tracing.enabled).toBe(false);
    await tracing.shutdown();
  });
});
