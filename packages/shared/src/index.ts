export { InvalidAddressError, MAX_ADDRESS_OCTETS, MAX_LOCAL_PART_OCTETS, type NormalizedAddress, needsSmtpUtf8, normalizeAddress, normalizeDomain, normalizeLocalPart } from './addresses/normalize-address.ts';
export { MAX_DOMAIN_OCTETS, MAX_LABEL_OCTETS, parseDomain } from './addresses/parse-domain.ts';
export {
  ALIAS_KINDS,
  type Alias,
  AliasConflictError,
  AliasCycleError,
  AliasInputError,
  type AliasKind,
  type AliasNode,
  type AliasRef,
  type CreateAliasInput,
  createAlias,
  createDomain,
  type Domain,
  DomainNotFoundError,
  deleteAlias,
  deleteDomain,
  findAliasCycle,
  getAlias,
  type Queryable,
  type RecipientResolution,
  resolveRecipient,
  resolveRecipients,
  setAliasEnabled,
  setAliasTargets,
  setDomainEnabled,
} from './aliases/index.ts';
export { type Env, envSchema } from './config/env-schema.ts';
export { type AppName, loadConfig, type PosternConfig, unknownMailVariables } from './config/load-config.ts';
export {
  type ListenAddress,
  parseByteSize,
  parseDuration,
  parseDurationList,
  parseListenAddress,
  parseRate,
  parseRedisEndpoint,
  type RedisEndpoint,
  withoutCredentials,
} from './config/parse-values.ts';
export { describeDbError, isDiskFullDbError, isRetryableDbError, isTransientDbError } from './db/db-errors.ts';
export { LookupSlots } from './db/lookup-slots.ts';
export { MIGRATIONS_DIR, type MigrateOptions, type MigrationResult, runMigrations } from './db/migrate.ts';
export { createPool, type Pool, type PoolClient, type PoolOptions, pingDatabase, withTransaction } from './db/pool.ts';
export { prepareDatabase } from './db/prepare-database.ts';
export { type DatabaseReadinessProbe, openDatabaseReadinessProbe } from './db/readiness-probe.ts';
export { checkServerSettings } from './db/server-settings.ts';
export { fillMark } from './db/sql-marks.ts';
export * from './dkim/index.ts';
export * from './dns/index.ts';
export { ConfigError } from './errors/config-error.ts';
export { SmtpReplyError } from './errors/smtp-reply-error.ts';
export { type OpsServer, type RouteHandler, sendJson, startOpsServer } from './http/ops-server.ts';
export { evaluateReadiness, type ReadinessCheck } from './http/readiness.ts';
export { decodePathSegment, hostProblem, requestTarget } from './http/request-target.ts';
export * from './intake/index.ts';
export * from './lifecycle/index.ts';
export { childLogger, type LogBindings } from './logging/child-logger.ts';
export { createLogger, type Logger, stdoutSink } from './logging/logger.ts';
export { repeatedTopLevelKeys } from './logging/repeated-keys.ts';
export { exportQueueGauges, registerQueueGauges } from './metrics/queue-gauges.ts';
export { createMetricsRegistry, prometheus, type Registry } from './metrics/registry.ts';
export { exportSampledGauges, type SampledGauge } from './metrics/sampled-gauges.ts';
export { type ScheduleSample, type ScheduleSampler, startScheduleSampler } from './metrics/schedule-sampler.ts';
export { OLDEST_DUE_AT, readScheduleStats, type ScheduleStats } from './metrics/schedule-stats.ts';
export { clientNetworkKey } from './net/client-network.ts';
export { isLoopbackAddress } from './net/loopback-address.ts';
export { bootConfig } from './process/boot-config.ts';
export { type RunningService, type RunServiceOptions, runService } from './process/run-service.ts';
export { type ExplainedFailure, explainStartupFailure } from './process/startup-failure.ts';
export { createRedisConnections, type Redis, type RedisConnections } from './redis/create-redis.ts';
export * from './routes/index.ts';
export * from './secrets/index.ts';
export * from './srs/index.ts';
export * from './templates/index.ts';
export { headerSection, unfoldedHeaderSection } from './text/header-section.ts';
export {
  type StorableTextOptions,
  storableText,
  storableTextFromBytes,
  storableTextOrNull,
  storageProblem,
  textProblem,
  truncationMarker,
} from './text/storable-text.ts';
export {
  API_SCOPES,
  type ApiScope,
  ApiTokenInputError,
  type ApiTokenRecord,
  authenticateApiToken,
  createApiToken,
  grantsScope,
  hashApiToken,
  isApiScope,
  listApiTokens,
  looksLikeApiToken,
  mintApiToken,
  type ProducerScope,
  producerReach,
  revokeApiToken,
  TOKEN_PREFIX,
} from './tokens/index.ts';
export { ATTR } from './tracing/attributes.ts';
export {
  contextOf,
  currentTraceparent,
  inSpan,
  isTraceparent,
  normalizedTraceparent,
  posternTracer,
  traceparentOf,
  tracingActive,
} from './tracing/trace-context.ts';
