import { describe, expect, it } from 'vitest';
import { parseHeaderFacts } from './parse-headers.ts';

describe('parseHeaderFacts', () => {
  it('makes header facts storable: a NUL or a control byte becomes a visible marker, never fails the insert', async () => {
    const raw = Buffer.from('Subject: a\u0000b\u0001c\r\nFrom: x@y.test\r\nMessage-ID: <m@y.test>\r\n\r\nbody\r\n', 'latin1');
    const facts = parseHeaderFacts(raw);
    expect(facts.subject).not.toContain('\u0000');
    expect(facts.subject).toContain('\u2400');
    expect(facts.subject).toMatch(/^a.b.c$/u);
    expect(facts.messageId).toBe('<m@y.test>');
  });

  it('bounds a header fact at 998 characters with a marker saying how much was cut', async () => {
    const facts = parseHeaderFacts(Buffer.from(`Subject: ${'x'.repeat(5_000)}\r\n\r\n`, 'latin1'));
    expect(facts.subject?.length).toBe(998);
    expect(facts.subject).toMatch(/\[\+\d+ chars\]$/);
  });
});
