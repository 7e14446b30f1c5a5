// QueueStats: the numbers an operator looks at first (dead-runner: 4k mails sat queued for two days).
import { fillMark, OLDEST_DUE_AT } from '@postern/shared';
import { builder } from './builder.ts';
import { DELIVERY_STATUSES, type DeliveryStatus, DeliveryStatusEnum } from './delivery.ts';

interface QueueStatsRow {
  depth: Array<{ status: DeliveryStatus; count: number }>;
  oldestDueAgeMs: number | null;
  deadLettersLast24h: number;
}

const StatusCount = builder.objectRef<{ status: DeliveryStatus; count: number }>('StatusCount').implement({
  fields: (t) => ({ status: t.field({ type: DeliveryStatusEnum, resolve: (row) => row.status }), count: t.exposeInt('count') }),
});

const QueueStatsRef = builder.objectRef<QueueStatsRow>('QueueStats');

QueueStatsRef.implement({
  fields: (t) => ({
    depth: t.field({
      type: [StatusCount],
      description: 'Deliveries per status; every status is listed, with 0 when there are none.',
      resolve: (stats) => stats.depth,
    }),
    oldestDueAgeMs: t.float({
      nullable: true,
      description: 'How long the longest-waiting due delivery (queued or retrying) has been due; null when none is due.',
      resolve: (stats) => stats.oldestDueAgeMs,
    }),
    deadLettersLast24h: t.exposeInt('deadLettersLast24h'),
  }),
});

// Counting every status scans the table; fine on one machine's queue, and the per-status index
// keeps the waiting statuses cheap. The engine's gauges (mail_attempt_schedule_depth) are the
// alerting source; this is for a human asking.
const QUEUE_STATS_SQL = fillMark(
  `
SELECT (SELECT coalesce(json_object_agg(status, n), '{}'::json)
          FROM (SELECT status, count(*)::int AS n FROM mail.deliveries GROUP BY status) s) AS depth,
       extract(epoch FROM (now() - /*OLDEST_DUE_AT*/)) * 1000 AS "oldestDueAgeMs",
       (SELECT count(*)::int FROM mail.dead_letters WHERE created_at > now() - interval '24 hours') AS "deadLettersLast24h"`,
  'OLDEST_DUE_AT',
  OLDEST_DUE_AT,
);

builder.queryField('queueStats', (t) =>
  t.field({
    type: QueueStatsRef,
    authScopes: { scope: 'queue:read' },
    resolve: async (_root, _args, context) => {
      const result = await context.db.query<{ depth: Record<string, number>; oldestDueAgeMs: string | null; deadLettersLast24h: number }>(
        QUEUE_STATS_SQL,
      );
      const row = result.rows[0];
      const counts = row?.depth ?? {};
      return {
        depth: DELIVERY_STATUSES.map((status) => ({ status, count: counts[status] ?? 0 })),
        oldestDueAgeMs: row?.oldestDueAgeMs == null ? null : Math.max(0, Math.round(Number(row.oldestDueAgeMs))),
        deadLettersLast24h: row?.deadLettersLast24h ?? 0,
      };
    },
  }),
);
