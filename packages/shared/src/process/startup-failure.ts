// A process that cannot start for a reason a person can fix — a port already taken, a port that
// needs privileges, a database that does not answer or refuses the login, a TLS certificate it does
// not trust or a server that takes only TLS — says what failed, why and what to do, in one line,
// without a stack trace. Anything else is a bug and keeps its stack.
import { isCertificateError, WRONG_HOST_CODE } from '../net/certificate-errors.ts';

/** Where the DSNs' TLS settings are explained. */
const TLS_DOCS = 'docs/deploy.md, "TLS to PostgreSQL and Redis"';
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
    if (code === WRONG_HOST_CODE) {
      return {
        what: "the server's TLS certificate is not for the host connected to",
        why: String(cause.message),
        todo: `connect by a name the certificate holds (its subjectAltName), or have it issued for this one (${TLS_DOCS})`,
      };
    }
    if (isCertificateError(cause)) {
      return {
        what: "the server's TLS certificate is not trusted",
        why: `${String(code)}: ${String(cause.message)}`,
        todo:
          'name the CA that issued it: sslmode=verify-full&sslrootcert=<CA file> in MAIL_POSTGRES_PRIMARY_DSN, MAIL_REDIS_TLS_CA for a rediss:// Redis, ' +
          `or NODE_EXTRA_CA_CERTS=<CA file> for both (${TLS_DOCS})`,
      };
    }
    // pg_hba.conf has only hostssl lines for this client: libpq's sslmode=disable, or none given.
    if (code === '28000' && typeof cause.message === 'string' && cause.message.endsWith('no encryption')) {
      return {
        what: 'PostgreSQL accepts only TLS connections from this host',
        why: cause.message,
        todo: `add sslmode=verify-full&sslrootcert=<CA file> to MAIL_POSTGRES_PRIMARY_DSN (${TLS_DOCS})`,
      };
    }
    if (cause.message === 'The server does not support SSL connections') {
      return {
        what: 'PostgreSQL does not offer TLS, and MAIL_POSTGRES_PRIMARY_DSN asks for it (sslmode, or sslrootcert)',
        why: cause.message,
        todo: `turn ssl on in the server, or, on a network you trust, set sslmode=disable (${TLS_DOCS})`,
      };
    }
    if (code === '28P01' || code === '28000') {
      return { what: 'PostgreSQL refused the login', why: String(cause.message), todo: 'check the user and password in MAIL_POSTGRES_PRIMARY_DSN' };
    }
    const redisReply = typeof cause.message === 'string' ? /^(WRONGPASS|NOAUTH|NOPERM)\b/.exec(cause.message)?.[1] : undefined;
    if (redisReply === 'WRONGPASS' || redisReply === 'NOAUTH') {
      return { what: 'Redis refused the login', why: String(cause.message), todo: 'check MAIL_REDIS_USERNAME (the ACL user, `on`) and MAIL_REDIS_PASSWORD' };
    }
    if (redisReply === 'NOPERM') {
      return {
        what: 'the Redis user may not run a command the engine needs',
        why: String(cause.message),
        todo: 'grant the user the ACL in docs/deploy.md, "A Redis user for the engines"',
      };
    }
    if (code === '3D000') {
      return { what: 'the PostgreSQL database does not exist', why: String(cause.message), todo: 'create it (createdb) or fix the database name in MAIL_POSTGRES_PRIMARY_DSN' };
    }
  }
  return null;
}
