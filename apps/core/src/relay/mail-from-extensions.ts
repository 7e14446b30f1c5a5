// MAIL FROM parameters the relay is given for relayed mail: BODY=8BITMIME (RFC 6152) and SMTPUTF8
// (RFC 6531) exactly when the original sender used them at the edge. SIZE is not passed: nodemailer
// refuses a message over the relay's SIZE itself with an error the engine would not read as the
// relay's permanent refusal. nodemailer adds each keyword only when the relay advertises the
// extension. SMTPUTF8 it adds by itself only for a non-ASCII envelope address, so a sender's
// SMTPUTF8 with an ASCII envelope (UTF-8 header fields, RFC 6532) would be dropped: the envelope's
// `useSmtpUtf8` (patches/nodemailer+10.6.0.patch, docs/library-patches.md) asks for it. A relay
// that does not offer SMTPUTF8 gets the message without it, and a non-ASCII address is then refused
// by the relay (RFC 6531 3.4: no silent downgrade), which the engine records like any refusal.
import type SMTPConnection from 'nodemailer/lib/smtp-connection';
import type { OutboundMessage } from './relay.ts';

export function relayEnvelope(message: OutboundMessage): SMTPConnection.Envelope {
  return {
    from: message.envelopeFrom,
    to: [message.recipient],
    ...(message.body8BitMime ? { use8BitMime: true } : {}),
    ...(message.smtpUtf8 ? { useSmtpUtf8: true } : {}),
  };
}
