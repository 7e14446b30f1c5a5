// MAIL FROM parameters the relay is given for relayed mail: BODY=8BITMIME (RFC 6152) and SMTPUTF8
// (RFC 6531) exactly when the original sender used them at the edge. SIZE is not passed: nodemailer
// refuses a message over the relay's SIZE itself with an error the engine would not read as the
// relay's permanent refusal. nodemailer's SMTPConnection adds BODY=8BITMIME for `use8BitMime`
// when the relay advertises 8BITMIME; SMTPUTF8 it
// adds only when an envelope address is non-ASCII, so a sender's SMTPUTF8 with an ASCII envelope
// (UTF-8 header fields, RFC 6532) would be dropped. For such a send the MAIL FROM line gets the
// keyword appended, when the relay advertises SMTPUTF8. A relay that does not: nodemailer sends
// without it, and a non-ASCII address is then refused by the relay (RFC 6531 3.4: no silent
// downgrade), which the engine records like any refusal.
import type SMTPConnection from 'nodemailer/lib/smtp-connection';
import type { OutboundMessage } from './relay.ts';

export function relayEnvelope(message: OutboundMessage): SMTPConnection.Envelope {
  return {
    from: message.envelopeFrom,
    to: [message.recipient],
    ...(message.body8BitMime ? { use8BitMime: true } : {}),
  };
}

interface CommandConnection {
  _sendCommand(command: string): void;
  _supportedExtensions?: string[];
}

/** For one send: append SMTPUTF8 to MAIL FROM when wanted and offered. Returns the undo. */
export function declareSmtpUtf8(connection: SMTPConnection, wanted: boolean): () => void {
  if (!wanted) return () => {};
  const target = connection as unknown as CommandConnection;
  const send = target._sendCommand;
  if (typeof send !== 'function') throw new Error('nodemailer: _sendCommand not found; check the SMTPUTF8 hook');
  target._sendCommand = function sendCommand(this: CommandConnection, command: string) {
    const offered = this._supportedExtensions?.includes('SMTPUTF8') === true;
    const isMailFrom = /^MAIL FROM:/i.test(command);
    return send.call(this, isMailFrom && offered && !/ SMTPUTF8(?: |$)/i.test(command) ? `${command} SMTPUTF8` : command);
  };
  return () => {
    target._sendCommand = send;
  };
}
