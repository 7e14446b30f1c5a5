// Receives the DATA stream smtp-server hands us (dot-unstuffed, otherwise the bytes as sent) and
// decides three things on the bytes themselves, while they stream:
// - size: counted here, not only advertised with SIZE. Past the cap nothing more is kept (what was
//   kept is released at once) but the stream is still read to its end, so the client gets its 552
//   after the final dot and memory stays bounded whatever it sends.
// - header size: the header section (up to the blank line that ends it; all of a message that has
//   none) is measured as it streams. Past MAIL_MTA_MAX_HEADER_SIZE nothing more is kept, as for the
//   size cap: the header parsers and mailauth, which all run after the final dot on what was kept,
//   never see a header larger than the limit (a 16 MB From: field held the event loop, every other
//   session with it, for seconds in them), and the client gets its 552 after the final dot.
// - bare CR / bare LF: the SMTP smuggling vectors (<LF>.<CR><LF>, <CR>.<CR>, <CR><CR><LF>. ...).
//   smtp-server ends DATA only on <CR><LF>.<CR><LF>, so such a sequence never ends the message
//   early; here any CR not followed by LF and any LF not preceded by CR refuses the whole message.
// - memory: every kept chunk is claimed from the edge's DATA memory budget first; a chunk that does
//   not fit stops the keeping (what was kept is released, the rest drained, 452 4.3.1 after the dot).
// - the bytes to store, when the message is acceptable.
// - while draining, the garbage of the socket's read buffers is freed as it goes (drained-memory.ts).
// - small chunks are joined before they are kept: a sender writing a byte per packet would otherwise
//   have the collector hold one Buffer per byte (some 100 bytes of bookkeeping each, and the read
//   buffer behind it): 1 MB sent so peaked at +40-70 MiB, which the budget, counting bytes, never saw.
import { Writable } from 'node:stream';
import { DrainedMemory } from './drained-memory.ts';
import type { MemoryReservation } from './memory-budget.ts';

const CR = 0x0d;
const LF = 0x0a;

export interface CollectedVerdict {
  /** Bytes received in DATA (after dot-unstuffing), counted to the end even past the cap. */
  size: number;
  oversize: boolean;
  bareLineEnding: boolean;
  /** The memory budget had no room for the message: nothing was kept. */
  overBudget: boolean;
  /** The header section is larger than the header cap: nothing was kept. */
  headerTooLarge: boolean;
}

/** For callers without a budget (unit tests): every claim fits. */
const UNBOUNDED: MemoryReservation = { tryGrow: () => true, release: () => {} };
const NOTHING = Buffer.alloc(0);
/** A received chunk smaller than this is copied into a run of small ones instead of kept as it is. */
const SMALL_CHUNK = 4 * 1024;
/** A run of small chunks becomes one buffer once it holds this many bytes, or this many chunks. */
const RUN_BYTES = 16 * 1024;
const RUN_CHUNKS = 256;
/** The blank line that ends the header section: the CRLF of the last field, then an empty line. */
const HEADER_END = Buffer.from('\r\n\r\n');
/** A message that opens with an empty line has an empty header: searched as if a CRLF preceded it. */
const BEFORE_MESSAGE = Buffer.from('\r\n');

export class MessageCollector extends Writable {
  readonly maxBytes: number;
  readonly maxHeaderBytes: number;
  private readonly memory: MemoryReservation;
  private size = 0;
  private chunks: Buffer[] = [];
  /** Small chunks received since the last one kept, not joined yet (SMALL_CHUNK). */
  private run: Buffer[] = [];
  private runBytes = 0;
  private keptBytes = 0;
  private keeping = true;
  private oversize = false;
  private bare = false;
  private overBudget = false;
  private headerTooLarge = false;
  /** Still in the header section: its end (the blank line) has not been seen yet. */
  private inHeader = true;
  /** The last bytes (at most 3) before the next chunk, for a blank line that straddles two chunks. */
  private headerTail: Buffer = BEFORE_MESSAGE;
  private readonly drainedMemory = new DrainedMemory();
  /** The previous chunk ended with a CR whose LF, if any, starts the next chunk. */
  private pendingCr = false;
  /** The previous byte seen was a CR (for an LF at the start of a chunk). */
  private lastWasCr = false;

  constructor(maxBytes: number, memory: MemoryReservation = UNBOUNDED, maxHeaderBytes = maxBytes) {
    super();
    this.maxBytes = maxBytes;
    this.maxHeaderBytes = maxHeaderBytes;
    this.memory = memory;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    const before = this.size;
    this.size += chunk.length;
    if (!this.bare) this.scanLineEndings(chunk);
    if (this.size > this.maxBytes) this.oversize = true;
    if (this.inHeader) this.scanHeader(chunk, before);
    if (this.keeping && !this.refused() && !this.memory.tryGrow(chunk.length)) this.overBudget = true;
    if (this.keeping && (this.refused() || this.overBudget)) this.stopKeeping();
    if (this.keeping) {
      this.keep(chunk);
    } else {
      this.drainedMemory.drained(chunk.length);
    }
    callback();
  }

  override _final(callback: (error?: Error | null) => void): void {
    // A CR at the very end has no LF after it.
    if (this.pendingCr) this.markBare();
    // No blank line at all: the whole message is header (as mailsplit, and mailauth, read it).
    if (this.inHeader && this.size > this.maxHeaderBytes) this.markHeaderTooLarge();
    this.endRun();
    callback();
  }

  get verdict(): CollectedVerdict {
    return { size: this.size, oversize: this.oversize, bareLineEnding: this.bare, overBudget: this.overBudget, headerTooLarge: this.headerTooLarge };
  }

  /**
   * The chunks kept so far, not copied: for a reader that streams the message before it is taken
   * (inbound authentication, src/auth/). Empty when nothing was kept.
   */
  keptChunks(): readonly Buffer[] {
    this.endRun();
    return this.keeping ? this.chunks : [];
  }

  /**
   * The message as one buffer, `prefix` (the trace header) first: one copy, and the chunks are let
   * go at once. Empty when nothing was kept. The reservation stays claimed: the caller releases it
   * once the buffer is no longer needed (after the commit).
   */
  takeMessage(prefix: Buffer = NOTHING): Buffer {
    if (!this.keeping) return NOTHING;
    this.endRun();
    const message = Buffer.concat([prefix, ...this.chunks], prefix.length + this.keptBytes);
    this.chunks = [];
    return message;
  }

  /** Refused either way (or no room): drop what was kept instead of holding it until the end. */
  private stopKeeping(): void {
    this.keeping = false;
    this.chunks = [];
    this.run = [];
    this.runBytes = 0;
    this.keptBytes = 0;
    this.memory.release();
  }

  private keep(chunk: Buffer): void {
    this.keptBytes += chunk.length;
    if (chunk.length >= SMALL_CHUNK) {
      this.endRun();
      this.chunks.push(chunk);
      return;
    }
    this.run.push(chunk);
    this.runBytes += chunk.length;
    if (this.runBytes >= RUN_BYTES || this.run.length >= RUN_CHUNKS) this.endRun();
  }

  /** The small chunks of the run as one buffer of their own size: copied, so the read buffers behind them go. */
  private endRun(): void {
    if (this.run.length === 0) return;
    // One chunk alone is kept as it is: nothing to join, and a copy would be one more per message.
    this.chunks.push(this.run.length === 1 ? (this.run[0] as Buffer) : Buffer.concat(this.run, this.runBytes));
    this.run = [];
    this.runBytes = 0;
  }

  /** Refused for what the bytes are (not for our memory): nothing more is kept. */
  private refused(): boolean {
    return this.oversize || this.bare || this.headerTooLarge;
  }

  private markHeaderTooLarge(): void {
    this.headerTooLarge = true;
    this.inHeader = false;
    if (this.keeping) this.stopKeeping();
  }

  /**
   * Looks for the blank line that ends the header section in `chunk` (which starts `offset` bytes
   * into the message). Its length is the offset of the CRLF that opens the empty line, plus 2: the
   * header's last CRLF belongs to it. Native indexOf, on header bytes only: once the end is found,
   * or the header is over the cap, no byte is looked at again.
   */
  private scanHeader(chunk: Buffer, offset: number): void {
    const tail = this.headerTail;
    // Offsets count from the imagined CRLF before the message (BEFORE_MESSAGE), so the offset of the
    // blank line's CRLF CRLF is the header's length. One straddling the chunks is searched for in
    // the last bytes before this one and its first 3.
    const start = offset + BEFORE_MESSAGE.length;
    const straddling = Buffer.concat([tail, chunk.subarray(0, 3)]).indexOf(HEADER_END);
    const inside = straddling === -1 ? chunk.indexOf(HEADER_END) : -1;
    if (straddling !== -1 || inside !== -1) {
      this.inHeader = false;
      const length = straddling !== -1 ? start - tail.length + straddling : start + inside;
      if (length > this.maxHeaderBytes) this.markHeaderTooLarge();
      return;
    }
    // Not ended yet: the end may still open in the last 3 bytes, so the header is at least this long.
    if (this.size - 1 > this.maxHeaderBytes) {
      this.markHeaderTooLarge();
      return;
    }
    this.headerTail = chunk.length >= 3 ? Buffer.from(chunk.subarray(chunk.length - 3)) : Buffer.concat([tail, chunk]).subarray(-3);
  }

  private markBare(): void {
    this.bare = true;
    this.pendingCr = false;
  }

  private scanLineEndings(chunk: Buffer): void {
    if (this.findsBareLineEnding(chunk)) this.markBare();
    else this.lastWasCr = chunk[chunk.length - 1] === CR;
  }

  private findsBareLineEnding(chunk: Buffer): boolean {
    if (chunk.length === 0) return false;
    if (this.pendingCr) {
      this.pendingCr = false;
      if (chunk[0] !== LF) return true;
    }
    // indexOf runs natively; a message costs one check per line, not per byte.
    let at = chunk.indexOf(LF);
    while (at !== -1) {
      const previous = at === 0 ? (this.lastWasCr ? CR : -1) : chunk[at - 1];
      if (previous !== CR) return true;
      at = chunk.indexOf(LF, at + 1);
    }
    at = chunk.indexOf(CR);
    while (at !== -1) {
      if (at === chunk.length - 1) {
        this.pendingCr = true;
        break;
      }
      if (chunk[at + 1] !== LF) return true;
      at = chunk.indexOf(CR, at + 1);
    }
    return false;
  }
}
