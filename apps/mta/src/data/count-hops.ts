// RFC 5321 6.3: a relay must detect mail loops; counting Received: headers is the method it names.
// Only the header section counts (a Received: line quoted in a body is not a hop), and a field
// name is matched case-insensitively at the start of a line (RFC 5322 2.2: folded continuation
// lines start with white space and are not fields). The section is all of it (the collector has
// bounded it at MAIL_MTA_MAX_HEADER_SIZE), and none when the message opens with the blank line.
import { headerSection } from '@postern/shared';

const RECEIVED_FIELD = /^received[ \t]*:/i;

export function countReceivedHeaders(data: Buffer): number {
  let count = 0;
  for (const line of headerSection(data).toString('latin1').split('\r\n')) if (RECEIVED_FIELD.test(line)) count += 1;
  return count;
}
