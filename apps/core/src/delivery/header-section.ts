// The header section of a message the engine sends, unfolded, for the few fields it reads itself
// (the From domain that picks the DKIM key, an existing ARC chain). Up to the blank line, wherever it
// is: cut at a fixed 64 KiB, a message whose header section was longer (the edge takes up to
// MAIL_MTA_MAX_HEADER_SIZE, 256 KiB by default) had its From or ARC-Seal fields past the cut missed,
// and was signed for no domain or sealed as the first of a chain it was not. The edge bounds a
// header section, so this reads at most that much (a stored message without a blank line is all
// header, and as such was under the cap too).
const CRLF_CRLF = Buffer.from('\r\n\r\n');
const LF_LF = Buffer.from('\n\n');

/** The bytes before the blank line that ends the header section (all of `raw` without one). */
function headerBytes(raw: Buffer): Buffer {
  const ends = [raw.indexOf(CRLF_CRLF), raw.indexOf(LF_LF)].filter((at) => at !== -1);
  return ends.length === 0 ? raw : raw.subarray(0, Math.min(...ends));
}

/** The header section decoded as `encoding`, its folded lines joined (RFC 5322 2.2.3). */
export function unfoldedHeaderSection(raw: Buffer, encoding: 'utf8' | 'latin1'): string {
  return headerBytes(raw).toString(encoding).replace(/\r?\n[ \t]+/g, ' ');
}
