import { describe, expect, it } from 'vitest';
import { SmtpReplyError } from './smtp-reply-error.ts';

describe('SmtpReplyError', () => {
  it('carries the basic and the enhanced code, the enhanced one leading the text', () => {
    const error = new SmtpReplyError(451, '4.3.0', 'Recipient lookup failed, try again later');
    expect(error.responseCode).toBe(451);
    expect(error.enhancedCode).toBe('4.3.0');
    expect(error.isPermanent).toBe(false);
    expect(error.reply).toBe('451 4.3.0 Recipient lookup failed, try again later');
  });

  it('refuses a mismatched class, so a temporary failure can never be sent as permanent', () => {
    expect(() => new SmtpReplyError(550, '4.3.0', 'x')).toThrow(RangeError);
    expect(() => new SmtpReplyError(250, '2.0.0', 'x')).toThrow(RangeError);
  });

  it('captures no stack trace (a reply is no fault; capturing one cost more than the rest of it) and leaves the limit as it was', () => {
    const limit = Error.stackTraceLimit;
    const cause = new Error('pool gone');
    const error = new SmtpReplyError(451, '4.3.0', 'Temporary failure', { cause });
    expect(error.stack).toBe('SmtpReplyError: 4.3.0 Temporary failure');
    expect(error.cause).toBe(cause);
    expect(Error.stackTraceLimit).toBe(limit);
    expect(new Error('after').stack).toMatch(/\n\s+at /);
  });
});
