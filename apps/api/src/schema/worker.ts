// Worker: one supervised loop of one process, as its heartbeat row says (dead-runner and stalled-worker, docs/incidents.md).
import { builder } from './builder.ts';

interface WorkerRow {
  workerId: string;
  loop: string;
  app: 'mta' | 'core' | 'api';
  hostname: string;
  pid: number;
  state: 'starting' | 'running' | 'backoff' | 'stopped';
  restarts: number;
  startedAt: Date;
  heartbeatAt: Date;
  heartbeatAgeMs: number;
  progressAt: Date | null;
  lastError: string | null;
}

const WorkerAppEnum = builder.enumType('WorkerApp', { values: ['mta', 'core', 'api'] as const });
const WorkerStateEnum = builder.enumType('WorkerState', { values: ['starting', 'running', 'backoff', 'stopped'] as const });

const WorkerRef = builder.objectRef<WorkerRow>('Worker');

WorkerRef.implement({
  fields: (t) => ({
    workerId: t.exposeString('workerId', { description: '<app>:<hostname>:<pid>:<random>' }),
    loop: t.exposeString('loop'),
    app: t.field({ type: WorkerAppEnum, resolve: (worker) => worker.app }),
    hostname: t.exposeString('hostname'),
    pid: t.exposeInt('pid'),
    state: t.field({ type: WorkerStateEnum, resolve: (worker) => worker.state }),
    restarts: t.exposeInt('restarts'),
    startedAt: t.expose('startedAt', { type: 'DateTime' }),
    heartbeatAt: t.expose('heartbeatAt', { type: 'DateTime' }),
    heartbeatAgeMs: t.exposeFloat('heartbeatAgeMs', { description: 'Measured by the database clock.' }),
    progressAt: t.expose('progressAt', { type: 'DateTime', nullable: true, description: 'Last finished unit of work.' }),
    lastError: t.exposeString('lastError', { nullable: true }),
  }),
});

builder.queryField('workers', (t) =>
  t.field({
    type: [WorkerRef],
    authScopes: { scope: 'queue:read' },
    description: 'Every loop that has heartbeated, most recently alive first.',
    args: {
      app: t.arg({ type: WorkerAppEnum, required: false }),
      includeStopped: t.arg.boolean({ required: false, defaultValue: false }),
    },
    resolve: async (_root, args, context) => {
      const result = await context.db.query<WorkerRow>(
        `SELECT worker_id AS "workerId", loop, app, hostname, pid, state, restarts, started_at AS "startedAt",
                heartbeat_at AS "heartbeatAt", greatest(0, extract(epoch FROM now() - heartbeat_at) * 1000)::float8 AS "heartbeatAgeMs",
                progress_at AS "progressAt", last_error AS "lastError"
           FROM mail.workers
          WHERE ($1::text IS NULL OR app = $1) AND ($2::boolean OR state <> 'stopped')
          ORDER BY heartbeat_at DESC, worker_id, loop
          LIMIT 1000`,
        [args.app ?? null, args.includeStopped ?? false],
      );
      return result.rows;
    },
  }),
);
