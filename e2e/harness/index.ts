export { type CapturedLogs, captureLogs } from './captured-logs.ts';
export { type E2eContext, TEMPLATE_DATABASE } from './context.ts';
export { type DedicatedPostgres, startDedicatedPostgres } from './dedicated-postgres.ts';
export { pauseContainer, unpauseContainer } from './docker-pause.ts';
export { listSinkEmails, type SinkEmail, sinkEmailsTo, sinkSmtp, waitForSinkEmails } from './maildev.ts';
export { metricSample } from './metric-sample.ts';
export { startTcpProxy, type TcpProxy } from './tcp-proxy.ts';
export { adminDsn, createTestDatabase, databaseDsn, type TestDatabase } from './test-database.ts';
export { type WaitOptions, waitFor } from './wait-for.ts';
