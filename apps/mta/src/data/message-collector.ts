// Receives the DATA stream smtp-server hands us (dot-unstuffed, otherwise the bytes as sent) and
// decides three things on the bytes themselves, while they stream:
// - size: counted here, not only advertised with SIZE. Past the cap nothing more is kept (what was
//   kept is released at once) but the stream is still read to its end, so the client gets its 552
//   after the final dot and memory stays bounded whatever it sends.
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
}

/** For callers without a budget (unit tests): every claim fits. */
const UNBOUNDED: MemoryReservation = { tryGrow: () => true, release: () => {} };
const NOTHING = Buffer.alloc(0);
/** A received chunk smaller than this is copied into a run of small ones instead of kept as it is. */
const SMALL_CHUNK = 4 * 1024;
/** A run of small chunks becomes one buffer once it holds this many bytes, or this many chunks. */
const RUN_BYTES = 16 * 1024;
const RUN_CHUNKS = 256;

export class MessageCollector extends Writable {
  readonly maxBytes: number;
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
  private readonly drainedMemory = new DrainedMemory();
  /** The previous chunk ended with a CR whose LF, if any, starts the next chunk. */
  private pendingCr = false;
  /** The previous byte seen was a CR (for an LF at the start of a chunk). */
  private lastWasCr = false;

  constructor(maxBytes: number, memory: MemoryReservation = UNBOUNDED) {
    super();
    this.maxBytes = maxBytes;
    this.memory = memory;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.size += chunk.length;
    if (!this.bare) this.scanLineEndings(chunk);
    if (this.size > this.maxBytes) this.oversize = true;
    if (this.keeping && !this.oversize && !this.bare && !this.memory.tryGrow(chunk.length)) this.overBudget = true;
    if (this.keeping && (this.oversize || this.bare || this.overBudget)) this.stopKeeping();
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
    this.endRun();
    callback();
  }

  get verdict(): CollectedVerdict {
    return { size: this.size, oversize: this.oversize, bareLineEnding: this.bare, overBudget: this.overBudget };
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
