// The header section of a message as stored or sent: one reader for the edge (the hop count, the
// header facts recorded with the message) and the engine (the From domain that picks the DKIM key,
// an existing ARC chain). Every line of such a message ends in CRLF (the edge refuses bare CR and
// LF; the engine's own mail is composed with CRLF).
//
// Not cut at a fixed size: the edge refuses a section over MAIL_MTA_MAX_HEADER_SIZE before anything
// reads it, and fixed cuts below the cap (256 KiB at the edge, 64 KiB in the engine) hid the fields
// past them — Received: hops, From, Subject, ARC-Seal — signing for no domain or sealing as the
// first of a chain a message was not.
const HEADER_END = Buffer.from('\r\n\r\n');
const CR = 0x0d;
const LF = 0x0a;

/** The header section including its last CRLF, without the blank line and body (all of `raw`
 *  without one); empty when the message opens with the blank line, as mailsplit and mailauth read it. */
export function headerSection(raw: Buffer): Buffer {
  if (raw[0] === CR && raw[1] === LF) return raw.subarray(0, 0);
  const end = raw.indexOf(HEADER_END);
  return end === -1 ? raw : raw.subarray(0, end + 2);
}

/** The header section decoded as `encoding`, its folded lines joined (RFC 5322 2.2.3). */
export function unfoldedHeaderSection(raw: Buffer, encoding: 'utf8' | 'latin1'): string {
  return headerSection(raw).toString(encoding).replace(/\r?\n[ \t]+/g, ' ');
}
