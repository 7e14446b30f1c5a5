// The edge's smtp-server options (respectEnhancedStatusCodes, keepAddressesAsReceived, the error
// limits, answering half-closed clients, greetingDelay, coalesceReplies, commandLineTimeout) come from patches/smtp-server+3.21.6.patch,
// applied by the root postinstall (docs/library-patches.md). An install that skipped it (npm
// --ignore-scripts, a copied node_modules) would ignore those options without a word — with
// allowHalfOpen set, a half-closed client would then hold its socket unanswered until the idle
// timeout, and every greeting would wait 100 ms. So the edge refuses to start on an unpatched
// smtp-server. Read-only: it looks for the methods the patch adds.
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { SMTPStream } from 'smtp-server/lib/smtp-stream.js';

const ADDED_METHODS = ['_processCommand', '_countError', '_textCarriesEnhancedStatusCode', '_addressDomain', '_greetingDelay', '_flushReplies', '_startLineTimer'] as const;

/** What the patch adds that `connection` (an SMTPConnection prototype) and `stream` lack. */
export function missingPatchParts(connection: object, stream: object): string[] {
  const missing: string[] = ADDED_METHODS.filter((name) => typeof (connection as Record<string, unknown>)[name] !== 'function');
  // The patched _flushData takes the callback that tells the connection the input is answered.
  const flush = (stream as Record<string, unknown>)._flushData;
  if (typeof flush !== 'function' || flush.length < 1) missing.push('SMTPStream._flushData(callback)');
  return missing;
}

export function assertSmtpServerPatched(): void {
  const missing = missingPatchParts(SMTPConnection.prototype, SMTPStream.prototype);
  if (missing.length > 0) {
    throw new Error(
      `smtp-server is not patched (missing ${missing.join(', ')}): run npm install, whose postinstall applies patches/ (docs/library-patches.md)`,
    );
  }
}
