import { describe, expect, it } from 'vitest';
import * as replies from './replies.ts';

describe('replies', () => {
  it('carry the precise enhanced code once, right after the basic code', () => {
    expect(replies.lookupFailed().reply).toBe('451 4.3.0 Temporary recipient lookup failure, try again later');
    expect(replies.relayDenied('a@b.test').reply).toBe('554 5.7.1 <a@b.test>: relay access denied');
    expect(replies.unknownRecipient('a@p.test').reply).toMatch(/^550 5\.1\.1 /);
    expect(replies.tooManyRecipients(100).reply).toMatch(/^452 4\.5\.3 /);
    expect(replies.messageTooLarge(10).reply).toMatch(/^552 5\.3\.4 /);
    expect(replies.insufficientStorage().reply).toBe('452 4.3.1 Insufficient system storage');
    expect(replies.bareLineEnding().reply).toMatch(/^554 5\.6\.0 .*bare CR or LF/);
  });

  it('turn anything unexpected into 451 4.3.0, never a 5xx', () => {
    expect(replies.asReply(new Error('boom')).reply).toMatch(/^451 4\.3\.0 /);
    expect(replies.asReply(new TypeError('x'), replies.storageFailed).responseCode).toBe(451);
  });
});
