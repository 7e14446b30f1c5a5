// Receives the DATA stream smtp-server hands us (dot-unstuffed, otherwise the bytes as sent) and
// decides three things on the bytes themselves, while they stream:
// - size: counted here, not only advertised with SIZE. Past the cap nothing more is kept (what was
//   kept is released at once) but the stream is still read to its end, so the client gets its 552
//   after the final dot and memory stays bounded whatever it sends.
// - bare CR / bare LF: the SMTP smuggling vectors (<LF>.<CR><LF>, <CR>.<CR>, <CR><CR><LF>. ...).
//   smtp-server ends DATA only on <CR><LF>.<CR><LF>, so such a sequence never ends the message
//   early; here any CR not followed by LF and any LF not preceded by CR refuses the whole message.
// - the bytes to store, when the message is acceptable.
import { Writable } from 'node:stream';

const CR = 0x0d;
const LF = 0x0a;

export interface CollectedMessage {
  /** Bytes received in DATA (after dot-unstuffing), counted to the end even past the cap. */
  size: number;
  oversize: boolean;
  bareLineEnding: boolean;
  /** The message, when it is neither oversize nor refused; empty otherwise. */
  raw: Buffer;
}

export class MessageCollector extends Writable {
  readonly maxBytes: number;
  private size = 0;
  private chunks: Buffer[] = [];
  private keeping = true;
  private oversize = false;
  private bare = false;
  /** The previous chunk ended with a CR whose LF, if any, starts the next chunk. */
  private pendingCr = false;
  /** The previous byte seen was a CR (for an LF at the start of a chunk). */
  private lastWasCr = false;

  constructor(maxBytes: number) {
    super();
    this.maxBytes = maxBytes;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.size += chunk.length;
    if (!this.bare) this.scanLineEndings(chunk);
    if (this.size > this.maxBytes) this.oversize = true;
    if (this.keeping && (this.oversize || this.bare)) {
      // Refused either way: drop what was kept instead of holding it until the end.
      this.keeping = false;
      this.chunks = [];
    }
    if (this.keeping) this.chunks.push(chunk);
    callback();
  }

  override _final(callback: (error?: Error | null) => void): void {
    // A CR at the very end has no LF after it.
    if (this.pendingCr) this.markBare();
    callback();
  }

  result(): CollectedMessage {
    return {
      size: this.size,
      oversize: this.oversize,
      bareLineEnding: this.bare,
      raw: this.keeping ? Buffer.concat(this.chunks, this.size) : Buffer.alloc(0),
    };
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
