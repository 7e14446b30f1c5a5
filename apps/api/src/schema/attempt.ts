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
}

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
  }),
});
