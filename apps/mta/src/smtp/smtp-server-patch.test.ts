import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { SMTPStream } from 'smtp-server/lib/smtp-stream.js';
import { describe, expect, it } from 'vitest';
import { assertSmtpServerPatched, missingPatchParts } from './smtp-server-patch.ts';

describe('assertSmtpServerPatched', () => {
  it('passes on the installed (patched) smtp-server', () => {
    expect(missingPatchParts(SMTPConnection.prototype, SMTPStream.prototype)).toEqual([]);
    expect(() => assertSmtpServerPatched()).not.toThrow();
  });

  it('names every part an unpatched smtp-server lacks', () => {
    expect(missingPatchParts({ _processCommand() {} }, { _flushData() {} })).toEqual([
      '_countError',
      '_textCarriesEnhancedStatusCode',
      '_addressDomain',
      '_greetingDelay',
      '_flushReplies',
      '_startLineTimer',
      'SMTPStream._flushData(callback)',
    ]);
  });
});
