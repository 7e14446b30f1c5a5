// Header facts recorded with the message (Message-ID, Subject, From), parsed by mailparser from the
// header section only: the body and its attachments are never handed to the parser, so a 25 MiB
// attachment costs nothing here. The raw bytes stay the authority; a header that cannot be parsed
// is recorded as missing, never a reason to refuse mail.
import { storableTextOrNull } from '@postern/shared';
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

// Header facts go to text columns: made storable at this boundary by the one shared rule (NUL,
// lone surrogates, controls become visible markers; a header is a line, 998 characters at most
// by RFC 5322 2.1.1). Only an absent or blank value is NULL.
function cleanText(value: string | undefined): string | null {
  const text = storableTextOrNull(value, { maxChars: 998 })?.trim();
  return text ? text : null;
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
