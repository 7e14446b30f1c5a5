// Inbound authentication as the edge starts it: its own mail resolver (MAIL_DNS_SERVERS; the
// engine has one of its own, each process its cache), its metrics, the policy. Nothing at all
// with MAIL_INBOUND_AUTH_POLICY=off: no resolver, no metrics, no work per message.
import { createMailResolver, type Logger, type MailResolver, type PosternConfig, type Registry } from '@postern/shared';
import type { InboundAuthStep } from './at-data.ts';
import { createInboundAuthMetrics } from './auth-metrics.ts';
import { createInboundAuth } from './inbound-auth.ts';

/** One lookup (both tries) takes at most this long, and never longer than the whole evaluation. */
const LOOKUP_TIMEOUT_CAP_MS = 10_000;

export function inboundAuthStep(
  config: PosternConfig,
  deps: { hostname: string; registry: Registry; logger: Logger },
): { step: InboundAuthStep; resolver: MailResolver } | null {
  const { policy, timeoutMs } = config.mta.inboundAuth;
  if (policy === 'off') {
    deps.logger.info('inbound authentication off (MAIL_INBOUND_AUTH_POLICY=off): no SPF, DKIM, DMARC or ARC checks');
    return null;
  }
  const resolver = createMailResolver({ servers: config.dns.servers, timeoutMs: Math.min(timeoutMs, LOOKUP_TIMEOUT_CAP_MS) });
  deps.logger.info({ policy, dnsServers: resolver.servers, timeoutMs }, 'inbound authentication (SPF, DKIM, DMARC, ARC)');
  const evaluate = createInboundAuth({
    resolver,
    hostname: deps.hostname,
    timeoutMs,
    metrics: createInboundAuthMetrics(deps.registry),
    logger: deps.logger,
  });
  return { step: { policy, evaluate }, resolver };
}
