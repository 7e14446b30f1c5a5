// Attempt: one try at handing a delivery to the relay, as the engine recorded it.
import { ATTEMPT_STATUSES, type AttemptStatus } from '@postern/shared';
import { builder } from './builder.ts';

export interface AttemptRow {
  id: string;
  deliveryId: string;
  attemptNumber: number;
  status: AttemptStatus;
  smtpCode: number | null;
  enhancedCode: string | null;
  smtpText: string | null;
  workerId: string;
  startedAt: Date;
  finishedAt: Date;
  durationMs: number;
  routeDomain: string | null;
  routeRelay: string | null;
  routeTls: string | null;
}

/** The route an attempt took: its three columns, or none for an attempt without a send. */
interface AttemptRoute {
  domain: string | null;
  relay: string;
  tls: string | null;
}

const AttemptRouteRef = builder.objectRef<AttemptRoute>('AttemptRoute').implement({
  description: 'Where the engine sent an attempt, as the route table said when it sent (read-only).',
  fields: (t) => ({
    domain: t.exposeString('domain', {
      nullable: true,
      description: 'The route that matched ("example.com", or ".example.com" for its subdomains); null: no route, MAIL_SMTP_MODE\'s default.',
    }),
    relay: t.exposeString('relay', { description: '"mx" (the recipient domain\'s MX hosts) or the relay\'s host:port.' }),
    tls: t.exposeString('tls', {
      nullable: true,
      description: 'opportunistic or required; null for the default relay of smtp mode (MAIL_SMTP_ADDR, certificate verified when it offers STARTTLS).',
    }),
  }),
});

export const AttemptStatusEnum = builder.enumType('AttemptStatus', {
  description: 'outcome_unknown: the data went out but no reply came (timeout after DATA, lease lost).',
  values: ATTEMPT_STATUSES,
});

export const AttemptRef = builder.objectRef<AttemptRow>('Attempt');

AttemptRef.implement({
  fields: (t) => ({
    id: t.exposeID('id'),
    deliveryId: t.exposeID('deliveryId'),
    attemptNumber: t.exposeInt('attemptNumber'),
    status: t.field({ type: AttemptStatusEnum, resolve: (attempt) => attempt.status }),
    smtpCode: t.exposeInt('smtpCode', { nullable: true }),
    enhancedCode: t.exposeString('enhancedCode', { nullable: true }),
    smtpText: t.exposeString('smtpText', { nullable: true }),
    workerId: t.exposeString('workerId'),
    startedAt: t.expose('startedAt', { type: 'DateTime' }),
    finishedAt: t.expose('finishedAt', { type: 'DateTime' }),
    durationMs: t.exposeInt('durationMs'),
    route: t.field({
      type: AttemptRouteRef,
      nullable: true,
      description: 'The route the attempt took; null in stub mode, for an attempt the engine did not send (outcome_unknown of a lost lease) and for attempts older than routes.',
      resolve: (attempt) => (attempt.routeRelay === null ? null : { domain: attempt.routeDomain, relay: attempt.routeRelay, tls: attempt.routeTls }),
    }),
  }),
});
