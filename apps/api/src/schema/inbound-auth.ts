// What the edge found when it checked a received message's SPF, DKIM, DMARC and ARC
// (MAIL_INBOUND_AUTH_POLICY, docs/mta.md "Inbound authentication"): the Authentication-Results
// header it prepended, and the verdicts as data. It is a header of the stored message, so reading
// it is reading message content: `content:read`, like Delivery.subject (docs/api/graphql.md).
import { builder } from './builder.ts';

/** mail.messages.auth_results / auth_verdicts of one message (the columns the edge writes). */
export interface InboundAuthRow {
  messageId: string;
  authResults: string | null;
  authVerdicts: {
    spf: string;
    dkim: { result: string; domain: string | null }[];
    dmarc: string;
    dmarcPolicy: string | null;
    dmarcDomain: string | null;
    arc: string;
    incomplete?: string;
  } | null;
}

export const INBOUND_AUTH_OF_MESSAGES_SQL = `
SELECT m.id::text AS "messageId", m.auth_results AS "authResults", m.auth_verdicts AS "authVerdicts"
  FROM mail.messages m
 WHERE m.id = ANY ($1::uuid[])`;

/** The row with both columns written, as the API gives it. */
export type InboundAuthentication = { header: string; verdicts: NonNullable<InboundAuthRow['authVerdicts']> };

export function inboundAuthenticationOf(row: InboundAuthRow | null): InboundAuthentication | null {
  if (!row || row.authResults === null || row.authVerdicts === null) return null;
  return { header: row.authResults, verdicts: row.authVerdicts };
}

const DkimSignatureVerdict = builder.objectRef<{ result: string; domain: string | null }>('DkimSignatureVerdict').implement({
  description: 'One DKIM-Signature of the message as the edge verified it.',
  fields: (t) => ({
    result: t.exposeString('result', { description: 'RFC 8601 result: pass, fail, neutral, none, temperror, permerror, policy.' }),
    domain: t.exposeString('domain', { nullable: true, description: 'The signing domain (d=); null when the message had no signature.' }),
  }),
});

export const InboundAuthenticationRef = builder.objectRef<InboundAuthentication>('InboundAuthentication').implement({
  description:
    'SPF, DKIM, DMARC and ARC of a received message as the edge evaluated them (MAIL_INBOUND_AUTH_POLICY). Results are RFC 8601 keywords; temperror means a DNS failure or the deadline left it unknown.',
  fields: (t) => ({
    header: t.string({
      description: 'The value of the Authentication-Results header the edge prepended to the stored message (authserv-id: the edge\'s MAIL_MTA_HOSTNAME).',
      resolve: (auth) => auth.header,
    }),
    spf: t.string({ resolve: (auth) => auth.verdicts.spf }),
    dkim: t.field({ type: [DkimSignatureVerdict], resolve: (auth) => auth.verdicts.dkim }),
    dmarc: t.string({ resolve: (auth) => auth.verdicts.dmarc }),
    dmarcPolicy: t.string({
      nullable: true,
      description: "The From domain's DMARC policy as applied (none, quarantine, reject), or null without a record.",
      resolve: (auth) => auth.verdicts.dmarcPolicy,
    }),
    arc: t.string({ resolve: (auth) => auth.verdicts.arc }),
    incomplete: t.string({
      nullable: true,
      description: 'deadline (MAIL_INBOUND_AUTH_TIMEOUT passed) or error: the evaluation did not finish by itself; what it did not learn is temperror.',
      resolve: (auth) => auth.verdicts.incomplete ?? null,
    }),
  }),
});
