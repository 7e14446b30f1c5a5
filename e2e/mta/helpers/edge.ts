// Edge instances for the tests, in-process, on ports the OS picks (two in one test is easy).
import { loadConfig, type PosternConfig } from '@postern/shared';
import { type Edge, type EdgeDeps, startEdge } from '../../../apps/mta/src/edge.ts';
import { checkingKeysOnStop, keyCheckedLogger } from '../../harness/index.ts';
import { type Reply, SmtpTestClient, sendMail } from './smtp-client.ts';

export const TEST_HOSTNAME = 'mx.postern.test';

export function edgeConfig(dsn: string, env: Record<string, string> = {}): PosternConfig {
  return loadConfig(
    {
      MAIL_POSTGRES_PRIMARY_DSN: dsn,
      MAIL_SMTP_LISTEN_ADDR: '127.0.0.1:0',
      MAIL_MTA_HTTP_ADDR: '127.0.0.1:0',
      MAIL_MTA_HOSTNAME: TEST_HOSTNAME,
      MAIL_LOG_LEVEL: process.env.POSTERN_E2E_LOG_LEVEL ?? 'silent',
      MAIL_POSTGRES_POOL_MAX: '4',
      MAIL_SHUTDOWN_TIMEOUT: '5s',
      ...env,
    },
    'mta',
  );
}

/** An edge whose stop() fails if a line it logged named a key twice (unless the test logs itself). */
export async function startTestEdge(dsn: string, env: Record<string, string> = {}, deps: Partial<EdgeDeps> = {}): Promise<Edge> {
  const config = edgeConfig(dsn, env);
  if (deps.logger) return startEdge(config, { ...deps, logger: deps.logger });
  const checked = keyCheckedLogger('mta-e2e', config.logLevel);
  return checkingKeysOnStop(await startEdge(config, { ...deps, logger: checked.logger }), checked);
}

/** Connected and greeted with EHLO, ready for MAIL FROM. */
export async function openSession(edge: Edge, helo = 'client.outside.test'): Promise<SmtpTestClient> {
  const { client, greeting } = await SmtpTestClient.connect(edge.smtp.port);
  if (greeting.code !== 220) throw new Error(`unexpected greeting ${greeting.raw}`);
  const ehlo = await client.command(`EHLO ${helo}`);
  if (ehlo.code !== 250) throw new Error(`EHLO refused: ${ehlo.raw}`);
  return client;
}

/** One session's answer to `RCPT TO:<address>` after MAIL FROM:<sender@outside.test>. */
export async function rcptReply(edge: Edge, address: string): Promise<Reply> {
  const client = await openSession(edge);
  try {
    const mail = await client.command('MAIL FROM:<sender@outside.test>');
    if (mail.code !== 250) throw new Error(`MAIL FROM refused: ${mail.raw}`);
    return await client.command(`RCPT TO:<${address}>`);
  } finally {
    await client.quit();
  }
}

export async function metricsText(edge: Edge): Promise<string> {
  if (!edge.http) throw new Error('edge started without HTTP');
  const response = await fetch(`http://${edge.http.host}:${edge.http.port}/metrics`);
  return response.text();
}

/** The edge's 250 after the final dot; its group is the stored message's id. */
export const QUEUED = /^250 2\.0\.0 queued as ([0-9a-f-]{36})$/;

/** One message from `from` to desk@postern.test in a session of its own: the reply to its final dot. */
export async function sendToDesk(edge: Edge, message: Buffer, options: { from: string; helo: string }): Promise<string> {
  const client = await openSession(edge, options.helo);
  try {
    return (await sendMail(client, { from: options.from, to: ['desk@postern.test'], message })).final?.raw ?? '(no reply)';
  } finally {
    await client.quit();
  }
}
