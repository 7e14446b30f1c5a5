// Header facts recorded with the message (Message-ID, Subject, From), parsed by mailparser from the
// header section only: the body and its attachments are never handed to the parser, so a 25 MiB
// attachment costs nothing here. The raw bytes stay the authority; a header that cannot be parsed
// is recorded as missing, never a reason to refuse mail.
import { simpleParser } from 'mailparser';

export interface HeaderFacts {
  messageId: string | null;
  subject: string | null;
  from: string | null;
}

/** Headers beyond this are not parsed (they are still stored): bounded work per message. */
export const MAX_HEADER_BYTES = 256 * 1024;
const HEADER_END = Buffer.from('\r\n\r\n');

/** The header section including its last CRLF, without the blank line and body. */
export function headerSection(raw: Buffer): Buffer {
  const end = raw.indexOf(HEADER_END);
  const section = end === -1 ? raw : raw.subarray(0, end + 2);
  return section.length > MAX_HEADER_BYTES ? section.subarray(0, MAX_HEADER_BYTES) : section;
}

// PostgreSQL text cannot hold NUL, and a header is a line: keep what a person would read.
function cleanText(value: string | undefined, maxLength = 998): string | null {
  if (value === undefined) return null;
  const cleaned = value.replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/g, '').trim();
  return cleaned === '' ? null : cleaned.slice(0, maxLength);
}

export async function parseHeaderFacts(raw: Buffer): Promise<HeaderFacts> {
  try {
    const parsed = await simpleParser(Buffer.concat([headerSection(raw), Buffer.from('\r\n')]), {
      skipHtmlToText: true,
      skipTextToHtml: true,
      skipImageLinks: true,
      skipTextLinks: true,
    });
    return {
      messageId: cleanText(parsed.messageId),
      subject: cleanText(parsed.subject),
      from: cleanText(parsed.from?.text),
    };
  } catch {
    return { messageId: null, subject: null, from: null };
  }
}
