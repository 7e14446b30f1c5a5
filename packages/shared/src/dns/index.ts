export { parseDnsServers } from './dns-servers.ts';
export {
  cacheTtlMs,
  createMailResolver,
  type DnsQuery,
  isDnsNoRecord,
  MAIL_RECORD_TYPES,
  MAX_TTL_MS,
  type MailRecords,
  type MailRecordType,
  type MailResolver,
  type MailResolverOptions,
  type MxRecord,
  NEGATIVE_TTL_MS,
  UNTIMED_TTL_MS,
} from './mail-resolver.ts';
