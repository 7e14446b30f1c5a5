// The resolver mailauth is given for one message: the edge's mail resolver (MAIL_DNS_SERVERS, its
// cache), seen through the errors mailauth reads. mailauth takes Node's codes: ENOTFOUND and
// ENODATA are answers ("no such record": spf=none, dkim=neutral "no key", no DMARC record),
// EBADNAME a name that cannot exist, and every other code a temporary failure (spf=temperror,
// dkim=temperror, dmarc=temperror). So what is unsure must never reach it as ENOTFOUND/ENODATA:
// a type the mail resolver does not ask for, a rejection without a code and the evaluation's
// deadline all become codes of temporary failures here. ARC is the exception mailauth makes ("all
// failures are permanent in the scope of ARC"): the failures counted here let verdicts.ts tell an
// arc=fail that came from DNS apart.
import { isDnsNoRecord, MAIL_RECORD_TYPES, type MailRecordType, type MailResolver } from '@postern/shared';

/** What mailauth calls: (name, rrtype) → records in the shapes of Node's resolver. */
export type MailauthResolver = (name: string, type: string) => Promise<unknown[]>;

export interface EvaluationResolver {
  resolve: MailauthResolver;
  /** Lookups that failed without an answer (timeout, SERVFAIL, refused, the deadline). */
  readonly temporaryFailures: number;
}

function dnsError(message: string, code: string): Error {
  return Object.assign(new Error(message), { code });
}

/** Node's code for a failure that is not an answer, or the error itself when it has one. */
function asTemporary(error: unknown, name: string, type: string): Error {
  const code = (error as { code?: unknown } | null)?.code;
  if (error instanceof Error && typeof code === 'string' && code !== '') return error;
  // ESERVFAIL: mailauth reads it (like any code but the "no record" ones) as a temperror.
  return dnsError(`DNS lookup of ${type} ${name} failed: ${error instanceof Error ? error.message : String(error)}`, 'ESERVFAIL');
}

/**
 * A resolver for one evaluation. Once `deadline` is aborted every lookup under way and every later
 * one fails at once with ETIMEOUT, so mailauth finishes promptly with temperrors for what was not
 * known by then, and verdicts for what was.
 */
export function evaluationResolver(resolver: MailResolver, deadline: AbortSignal): EvaluationResolver {
  let temporaryFailures = 0;
  const expired = (name: string, type: string) => dnsError(`DNS lookup of ${type} ${name}: the evaluation's deadline passed`, 'ETIMEOUT');
  const resolve: MailauthResolver = async (name, type) => {
    try {
      if (deadline.aborted) throw expired(name, type);
      if (typeof name !== 'string' || !MAIL_RECORD_TYPES.includes(type as MailRecordType)) {
        // Not a type the mail resolver asks for: unknown is not "none".
        throw dnsError(`DNS lookup of ${String(type)} records is not supported`, 'ENOTIMP');
      }
      const lookup = resolver.resolve(name, type as MailRecordType) as Promise<unknown[]>;
      return await new Promise<unknown[]>((settle, fail) => {
        const onAbort = () => fail(expired(name, type));
        deadline.addEventListener('abort', onAbort, { once: true });
        lookup.then(settle, fail).finally(() => deadline.removeEventListener('abort', onAbort));
      });
    } catch (error) {
      const code = (error as { code?: unknown } | null)?.code;
      if (isDnsNoRecord(error) || code === 'EBADNAME') throw error;
      temporaryFailures += 1;
      throw asTemporary(error, String(name), String(type));
    }
  };
  return {
    resolve,
    get temporaryFailures() {
      return temporaryFailures;
    },
  };
}
