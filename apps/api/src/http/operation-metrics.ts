// mail_api_operations_total{operation,outcome} and mail_api_operation_duration_ms. The operation
// label is the root field(s) an operation selects — names from the schema, so the label set stays
// bounded whatever operation names clients invent. mail_api_commands_malformed_total{failure_code}:
// the sendEmail commands refused and recorded in malformedCommands (channel api), the API's
// counterpart of the engine's mail_stream_commands_malformed_total.
import type { Registry } from '@postern/shared';
import { FAILURE_CODES, prometheus } from '@postern/shared';
import type { DocumentNode, OperationDefinitionNode } from 'graphql';
import { Kind } from 'graphql';
import type { Plugin } from 'graphql-yoga';

export interface ApiMetrics {
  operations: prometheus.Counter<'operation' | 'outcome'>;
  duration: prometheus.Histogram<'operation' | 'outcome'>;
  unauthorized: prometheus.Counter<'reason'>;
  tokenLookupsRefused: prometheus.Counter;
  tokenLookupsAbandoned: prometheus.Counter;
  tokenLookupsFailed: prometheus.Counter;
  commandsMalformed: prometheus.Counter<'failure_code'>;
}

export function createApiMetrics(registry: Registry): ApiMetrics {
  const metrics: ApiMetrics = {
    operations: new prometheus.Counter({
      name: 'mail_api_operations_total',
      help: 'GraphQL operations by root field(s) and outcome (ok, error, rejected: refused before execution)',
      labelNames: ['operation', 'outcome'],
      registers: [registry],
    }),
    duration: new prometheus.Histogram({
      name: 'mail_api_operation_duration_ms',
      help: 'GraphQL execution time in milliseconds',
      labelNames: ['operation', 'outcome'],
      buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000],
      registers: [registry],
    }),
    unauthorized: new prometheus.Counter({
      name: 'mail_api_unauthorized_total',
      help: 'Requests answered 401 (no, unknown or revoked token)',
      labelNames: ['reason'],
      registers: [registry],
    }),
    tokenLookupsRefused: new prometheus.Counter({
      name: 'mail_api_token_lookups_refused_total',
      help: 'Requests answered 503 with Retry-After because every bearer-token lookup slot (a quarter of the pool) stayed taken for a second: a flood of tokens, or PostgreSQL slow to answer them',
      registers: [registry],
    }),
    tokenLookupsAbandoned: new prometheus.Counter({
      name: 'mail_api_token_lookups_abandoned_total',
      help: 'Requests whose client closed the connection before their bearer-token lookup began: no lookup was run for them',
      registers: [registry],
    }),
    tokenLookupsFailed: new prometheus.Counter({
      name: 'mail_api_token_lookups_failed_total',
      help: 'Bearer-token lookups PostgreSQL did not answer (away, or past its statement timeout): their requests were answered 503 with Retry-After',
      registers: [registry],
    }),
    commandsMalformed: new prometheus.Counter({
      name: 'mail_api_commands_malformed_total',
      help: 'sendEmail commands refused and recorded in malformedCommands (channel api), by failure code',
      labelNames: ['failure_code'],
      registers: [registry],
    }),
  };
  // Every code's series exists from the start at 0, as the engine's do: the first refusal is an
  // increase a rate or an alert sees.
  for (const failure_code of FAILURE_CODES) metrics.commandsMalformed.inc({ failure_code }, 0);
  return metrics;
}

const MAX_FIELDS_IN_LABEL = 3;

export function operationLabel(operation: OperationDefinitionNode | undefined): string {
  if (!operation) return 'unknown';
  const fields = operation.selectionSet.selections
    .map((selection) => (selection.kind === Kind.FIELD ? selection.name.value : '...'))
    .filter((name, index, all) => all.indexOf(name) === index)
    .sort();
  const shown = fields.slice(0, MAX_FIELDS_IN_LABEL).join('+');
  return `${operation.operation}:${fields.length > MAX_FIELDS_IN_LABEL ? `${shown}+more` : shown}`;
}

export function useOperationMetrics(metrics: ApiMetrics): Plugin {
  return {
    onValidate() {
      return ({ valid }) => {
        // Refused by validation (unknown field, depth, cost, aliases): counted, never executed.
        if (!valid) metrics.operations.inc({ operation: 'invalid', outcome: 'rejected' });
      };
    },
    onExecute({ args }) {
      const startedAt = performance.now();
      const operations = (args.document as DocumentNode).definitions.filter(
        (definition): definition is OperationDefinitionNode => definition.kind === Kind.OPERATION_DEFINITION,
      );
      const operation = operationLabel(
        operations.find((definition) => !args.operationName || definition.name?.value === args.operationName),
      );
      return {
        onExecuteDone({ result }) {
          const failed = 'errors' in result && Array.isArray(result.errors) && result.errors.length > 0;
          const labels = { operation, outcome: failed ? 'error' : 'ok' };
          metrics.operations.inc(labels);
          metrics.duration.observe(labels, performance.now() - startedAt);
        },
      };
    },
  };
}
