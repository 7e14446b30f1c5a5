// graphql-yoga around the Pothos schema, with the protections a control plane needs: CSRF
// prevention, depth / alias / cost limits checked before execution, masked errors in production,
// and introspection, schema suggestions in errors and GraphiQL only where they help (development)
// unless asked for. With tracing on, each operation is a span (envelop's OpenTelemetry plugin)
// under the HTTP request's; without, the plugin is not installed at all, so an untraced request
// does not pay for printing its document.

import { useOpenTelemetry } from '@envelop/opentelemetry';
import { maxAliasesPlugin } from '@escape.tech/graphql-armor-max-aliases';
import { maxDepthPlugin } from '@escape.tech/graphql-armor-max-depth';
import { useCSRFPrevention } from '@graphql-yoga/plugin-csrf-prevention';
import { renderGraphiQL } from '@graphql-yoga/render-graphiql';
import { SpanKind, trace } from '@opentelemetry/api';
import type { Logger, Pool, SecretsKey } from '@postern/shared';
import { GraphQLError, NoSchemaIntrospectionCustomRule } from 'graphql';
import { createYoga, type Plugin, type YogaServerInstance, type YogaServerOptions } from 'graphql-yoga';
import type { ApiContext, Principal } from '../context.ts';
import type { SendEmailIntake } from '../operations/send-email-intake.ts';
import { schema } from '../schema/index.ts';
import { createLoaders } from '../schema/loaders.ts';
import { PAGE_DEFAULT_SIZE, PAGE_MAX_SIZE } from '../schema/pagination.ts';
import { useHiddenSuggestions } from './hidden-suggestions.ts';
import { type ApiMetrics, useOperationMetrics } from './operation-metrics.ts';
import { useQueryCost } from './query-cost.ts';
import { useBoundedParse, useGuardedSearchParams, useRequiredQuery } from './request-parsing.ts';

/** The limits, in one place (documented in docs/api/graphql.md). */
export const QUERY_LIMITS = {
  /** Tokens of a document: every real query is a few hundred at most; it also bounds how deep a
   *  document can nest, which the parser recurses into (request-parsing.ts). */
  maxTokens: 2_000,
  maxDepth: 8,
  maxAliases: 15,
  maxCost: 5_000,
} as const;

export interface ServerContext {
  /** Set by the HTTP layer after bearer authentication; null only for the GraphiQL page itself. */
  principal: Principal | null;
  /** The request's W3C traceparent header, normalised, or null. */
  callerTraceparent: string | null;
}

export interface YogaOptions {
  db: Pool;
  logger: Logger;
  intake: SendEmailIntake;
  secretsKey: SecretsKey | null;
  metrics: ApiMetrics;
  production: boolean;
  introspection: boolean;
  graphiql: boolean;
  /** The process traces (main.ts started the SDK): each operation gets a span. */
  tracing: boolean;
}

function useDisableIntrospection(): Plugin {
  return {
    onValidate({ addValidationRule }) {
      addValidationRule(NoSchemaIntrospectionCustomRule);
    },
  };
}

export type ApiYoga = YogaServerInstance<ServerContext, ApiContext>;

export function createApiYoga(options: YogaOptions): ApiYoga {
  const plugins: NonNullable<YogaServerOptions<ServerContext, ApiContext>['plugins']> = [
    // Every request must be one a browser would have preflighted (a JSON body, or a custom header):
    // a cross-site form or <img> GET cannot drive a mutation with someone's cookie... or token.
    useCSRFPrevention({ requestHeaders: ['x-graphql-yoga-csrf', 'x-postern-csrf'] }),
    useGuardedSearchParams(),
    useRequiredQuery(),
    useBoundedParse(QUERY_LIMITS.maxTokens),
    maxDepthPlugin({ n: QUERY_LIMITS.maxDepth, flattenFragments: true, exposeLimits: true }),
    maxAliasesPlugin({ n: QUERY_LIMITS.maxAliases, exposeLimits: true }),
    // Rows counted as served: a page size in a variable or left out is counted too (query-cost.ts).
    useQueryCost({ maxCost: QUERY_LIMITS.maxCost, defaultPageSize: PAGE_DEFAULT_SIZE, maxPageSize: PAGE_MAX_SIZE }),
    useOperationMetrics(options.metrics),
  ];
  // Without introspection, no "Did you mean ...?" either: the suggestions would map the schema.
  if (!options.introspection) plugins.push(useDisableIntrospection(), useHiddenSuggestions());
  if (options.tracing) {
    // The operation's name, type and document (inline arguments make the plugin leave the
    // document out); never its variables or result, which hold addresses and mail content. No
    // span per resolver: the statements they run are traced by the pg instrumentation.
    plugins.push(useOpenTelemetry({ resolvers: false, variables: false, result: false }, trace.getTracerProvider(), SpanKind.INTERNAL, {}, 'postern-graphql'));
  }

  return createYoga<ServerContext, ApiContext>({
    schema,
    graphqlEndpoint: '/graphql',
    landingPage: false,
    batching: false,
    // No GraphQL uploads: nothing in the schema takes a file (request-parsing.ts).
    multipart: false,
    // GraphiQL's scripts and styles served by this process, not fetched from a CDN: the page works
    // on an operator's machine with no internet (and leaks nothing about who uses it).
    renderGraphiQL,
    graphiql: options.graphiql
      ? {
          title: 'Postern GraphQL',
          headers: JSON.stringify({ Authorization: 'Bearer <paste a token: npx postern token create ...>' }, null, 2),
        }
      : false,
    // Unexpected errors become "Unexpected error." with no detail in production; typed errors and
    // FORBIDDEN are GraphQLErrors on purpose and pass through.
    maskedErrors: options.production ? true : { isDev: true },
    logging: {
      debug: (...args) => options.logger.debug(args.map(String).join(' ')),
      info: (...args) => options.logger.info(args.map(String).join(' ')),
      warn: (...args) => options.logger.warn(args.map(String).join(' ')),
      error: (...args) => options.logger.error({ detail: args }, 'graphql error'),
    },
    plugins,
    context: ({ principal, callerTraceparent }): ApiContext => {
      if (!principal) throw new GraphQLError('authentication required', { extensions: { code: 'UNAUTHENTICATED', http: { status: 401 } } });
      return {
        db: options.db,
        principal,
        logger: options.logger,
        intake: options.intake,
        secretsKey: options.secretsKey,
        callerTraceparent,
        loaders: createLoaders(options.db),
      };
    },
  });
}
