// The names of the attributes Postern puts on its own spans (docs/observability.md lists them with
// the spans that carry them). The ids are the ones the logs carry as messageId and deliveryId, so
// a trace found by one is found by the other.
export const ATTR = {
  messageId: 'postern.message_id',
  deliveryId: 'postern.delivery_id',
  attempt: 'postern.attempt',
  workerId: 'postern.worker_id',
  outcome: 'postern.outcome',
  source: 'postern.source',
  smtpSession: 'postern.smtp.session_id',
  smtpReplyCode: 'postern.smtp.reply_code',
  smtpEnhancedCode: 'postern.smtp.enhanced_code',
  smtpReplyText: 'postern.smtp.reply_text',
} as const;
