import { describe, expect, it } from 'vitest';
import { rawSenderArgument, senderAsReceived } from './sender-as-received.ts';

describe('senderAsReceived', () => {
  it('puts back an A-label domain smtp-server decoded', () => {
    expect(senderAsReceived('a@bücher.example', 'MAIL FROM:<a@xn--bcher-kva.example> BODY=8BITMIME')).toBe('a@xn--bcher-kva.example');
    expect(senderAsReceived('a@bücher.example', 'mail from: <@relay.test:a@xn--bcher-kva.example>')).toBe('a@xn--bcher-kva.example');
  });

  it('keeps the parsed address when the sender sent UTF-8, or the local parts differ', () => {
    expect(senderAsReceived('a@bücher.example', 'MAIL FROM:<a@bücher.example> SMTPUTF8')).toBe('a@bücher.example');
    expect(senderAsReceived('a@b.example', 'MAIL FROM:<x@b.example>')).toBe('a@b.example');
    expect(senderAsReceived('', 'MAIL FROM:<>')).toBe('');
  });

  it('reads the argument between the angle brackets', () => {
    expect(rawSenderArgument('MAIL FROM:<a@b>')).toBe('a@b');
    expect(rawSenderArgument('RCPT TO:<a@b>')).toBeNull();
  });
});
