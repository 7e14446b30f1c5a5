// A process that cannot start for a reason a person can fix — a port already taken, a port that
// needs privileges, a database that does not answer or refuses the login — says what failed, why
// and what to do, in one line, without a stack trace. Anything else is a bug and keeps its stack.
export interface ExplainedFailure {
  what: string;
  why: string;
  todo: string;
}

interface SystemErrorFields {
  code?: unknown;
  syscall?: unknown;
  address?: unknown;
  port?: unknown;
  hostname?: unknown;
  message?: unknown;
}

function where(error: SystemErrorFields): string {
  if (typeof error.address === 'string' && error.port !== undefined) return `${error.address}:${String(error.port)}`;
  if (typeof error.hostname === 'string') return error.hostname;
  return 'the configured address';
}

/** Underlying causes first: pg and undici wrap the system error they met. */
function causes(error: unknown): SystemErrorFields[] {
  const chain: SystemErrorFields[] = [];
  let current: unknown = error;
  while (current && typeof current === 'object' && chain.length < 5) {
    chain.push(current as SystemErrorFields);
    current = (current as { cause?: unknown }).cause;
  }
  if (error instanceof AggregateError) for (const inner of error.errors) chain.push(inner as SystemErrorFields);
  return chain;
}

export function explainStartupFailure(error: unknown): ExplainedFailure | null {
  for (const cause of causes(error)) {
    const code = cause.code;
    if (code === 'EADDRINUSE') {
      return {
        what: `cannot listen on ${where(cause)}`,
        why: 'another process already listens there (another Postern still running?)',
        todo: 'stop that process, or choose another address with the MAIL_*_ADDR variable of this listener',
      };
    }
    if (code === 'EACCES' && cause.syscall === 'listen') {
      return {
        what: `cannot listen on ${where(cause)}`,
        why: 'ports below 1024 need root or the CAP_NET_BIND_SERVICE capability',
        todo: 'grant the capability (setcap, or AmbientCapabilities= in systemd), or listen on a port above 1023 behind a redirect',
      };
    }
    if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EHOSTUNREACH' || code === 'ETIMEDOUT' || code === 'EAI_AGAIN') {
      return {
        what: `cannot reach ${where(cause)}`,
        why: typeof cause.message === 'string' ? cause.message : String(code),
        todo: 'check that the server runs and that its address (MAIL_POSTGRES_PRIMARY_DSN, MAIL_REDIS_MASTER_ADDR, …) is right',
      };
    }
    if (code === '28P01' || code === '28000') {
      return { what: 'PostgreSQL refused the login', why: String(cause.message), todo: 'check the user and password in MAIL_POSTGRES_PRIMARY_DSN' };
    }
    if (code === '3D000') {
      return { what: 'the PostgreSQL database does not exist', why: String(cause.message), todo: 'create it (createdb) or fix the database name in MAIL_POSTGRES_PRIMARY_DSN' };
    }
  }
  return null;
}
