// Header facts recorded with the message (Message-ID, Subject, From), read from the header section
// only: the body and its attachments are never looked at, so a 25 MiB attachment costs nothing
// here. The raw bytes stay the authority; a header that cannot be parsed is recorded as missing,
// never a reason to refuse mail.
//
// Exactly what mailparser's simpleParser reports for these three fields (the edge used it until
// it was a tenth of the edge's CPU per message, nearly all of it spent on what is not kept: a MIME
// tree, streams, every other header decoded): the same header block mailsplit's splitter would
// cut, split and unfolded by mailsplit's own Headers, each value taken as mailparser's
// processHeaders takes it (libmime decodeHeader, trimmed, UTF-8; encoded words decoded; the
// Message-ID in <>; From through mailparser's parseAddressHeader), the first non-empty occurrence
// kept. parse-headers.property.test.ts checks this against simpleParser itself.
import { headerSection, storableTextOrNull } from '@postern/shared';
import { Headers } from '@zone-eu/mailsplit';
import libmime from 'libmime';
import { parseAddressHeader } from 'mailparser';

export interface HeaderFacts {
  messageId: string | null;
  subject: string | null;
  from: string | null;
}

const HEADER_END = Buffer.from('\r\n\r\n');
const CRLF = Buffer.from('\r\n');
const LF_LF = Buffer.from('\n\n');
const LF_CRLF = Buffer.from('\n\r\n');
const CR = 0x0d;
const LF = 0x0a;

// Header facts go to text columns: made storable at this boundary by the one shared rule (NUL,
// lone surrogates, controls become visible markers; a header is a line, 998 characters at most
// by RFC 5322 2.1.1). Only an absent or blank value is NULL.
function cleanText(value: string | undefined): string | null {
  const text = storableTextOrNull(value, { maxChars: 998 })?.trim();
  return text ? text : null;
}

/** The header block mailsplit's splitter cuts from a header section: up to the first empty line
 *  (LF or CRLF alone), else all of it. The section gets a CRLF appended, as before. */
function headerBlock(section: Buffer): Buffer {
  const input = Buffer.concat([section, CRLF]);
  if (input[0] === LF || (input[0] === CR && input[1] === LF)) return input.subarray(0, 0);
  const bare = input.indexOf(LF_LF);
  const crlf = input.indexOf(LF_CRLF);
  const end = bare === -1 ? crlf : crlf === -1 ? bare : Math.min(bare, crlf);
  return end === -1 ? input : input.subarray(0, end + 1);
}

/** A header line's value as mailparser's processHeaders starts from it. */
function headerValue(line: string): string {
  const value = (libmime.decodeHeader(line)?.value ?? '').toString().trim();
  return Buffer.from(value, 'binary').toString();
}

function decodeWords(value: string): string {
  try {
    return libmime.decodeWords(value);
  } catch {
    return value;
  }
}

/** mailparser's ensureMessageIDFormat. */
function inAngleBrackets(value: string): string {
  if (!value.length) return value;
  return `${value.startsWith('<') ? '' : '<'}${value}${value.endsWith('>') ? '' : '>'}`;
}

export function parseHeaderFacts(raw: Buffer): HeaderFacts {
  try {
    let messageId: string | undefined;
    let subject: string | undefined;
    let from: string | undefined;
    for (const { key, line } of new Headers(headerBlock(headerSection(raw))).getList()) {
      if (key === 'message-id') messageId ||= inAngleBrackets(decodeWords(headerValue(line))) || undefined;
      else if (key === 'subject') subject ||= decodeWords(headerValue(line)) || undefined;
      else if (key === 'from' && from === undefined) from = parseAddressHeader(headerValue(line)).text;
    }
    return { messageId: cleanText(messageId), subject: cleanText(subject), from: cleanText(from) };
  } catch {
    return { messageId: null, subject: null, from: null };
  }
}

/** The header section of a message kept in chunks, all of it however long (including its last
 *  CRLF), as headerSection reads it (empty when the message opens with the blank line): the chunks
 *  are joined only up to the one that holds the blank line ending it. */
export function wholeHeaderSection(chunks: readonly Buffer[]): Buffer {
  const kept: Buffer[] = [];
  let tail: Buffer = Buffer.alloc(0);
  for (const chunk of chunks) {
    kept.push(chunk);
    // The blank line may straddle two chunks: the last 3 bytes before this one and this one's
    // first 3 are searched together, without copying the chunk.
    if (chunk.includes(HEADER_END) || Buffer.concat([tail, chunk.subarray(0, 3)]).includes(HEADER_END)) break;
    tail = chunk.length >= 3 ? chunk.subarray(chunk.length - 3) : Buffer.concat([tail, chunk]).subarray(-3);
  }
  return headerSection(Buffer.concat(kept));
}

/**
 * Every address of every From field, as mailparser reads them (encoded words decoded, a group's
 * mailboxes included): the authors a mail reader shows. Inbound DMARC evaluates their domains too
 * (auth/author-domains.ts): mailauth reads the addresses as sent, and "From:
 * =?utf-8?q?ceo=40bank.example?=" has no address for it at all.
 */
export function fromAddresses(section: Buffer): string[] {
  try {
    const addresses: string[] = [];
    for (const { key, line } of new Headers(headerBlock(section)).getList()) {
      if (key !== 'from') continue;
      for (const entry of parseAddressHeader(headerValue(line)).value) {
        for (const mailbox of entry.group ?? [entry]) if (mailbox.address) addresses.push(mailbox.address);
      }
    }
    return addresses;
  } catch {
    return [];
  }
}
