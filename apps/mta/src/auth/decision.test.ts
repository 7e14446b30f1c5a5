// The verdicts → reply mapping of MAIL_INBOUND_AUTH_POLICY, and the header text for hostile values.

import type { AuthenticateResult } from 'mailauth';
import { describe, expect, it } from 'vitest';
import { authUnsure, decide, dmarcRejected, replyFor } from './decision.ts';
import { type AuthVerdicts, authResultsHeader, summarize, unknownVerdicts } from './verdicts.ts';

const passing: AuthVerdicts = {
  spf: 'pass',
  dkim: [{ result: 'pass', domain: 'sender.test' }],
  dmarc: 'pass',
  dmarcPolicy: 'reject',
  dmarcDomain: 'sender.test',
  arc: 'none',
};
const failing: AuthVerdicts = { ...passing, spf: 'fail', dkim: [{ result: 'fail', domain: 'sender.test' }], dmarc: 'fail' };

describe('decide', () => {
  it('annotate and off never refuse, whatever the verdicts', () => {
    for (const policy of ['annotate', 'off'] as const) {
      for (const verdicts of [passing, failing, unknownVerdicts('mx', 'deadline').verdicts]) expect(decide(policy, verdicts)).toBe('accept');
    }
  });

  it('enforce refuses a certain DMARC failure of a p=reject domain, and only that', () => {
    expect(decide('enforce', failing)).toBe('reject');
    expect(decide('enforce', { ...failing, dkim: [{ result: 'none', domain: null }], spf: 'softfail' })).toBe('reject');
    expect(decide('enforce', passing)).toBe('accept');
    expect(decide('enforce', { ...failing, dmarcPolicy: 'quarantine' })).toBe('accept');
    expect(decide('enforce', { ...failing, dmarcPolicy: 'none' })).toBe('accept');
    expect(decide('enforce', { ...failing, dmarc: 'none', dmarcPolicy: null })).toBe('accept');
    // DMARC passes on an aligned DKIM signature although SPF could not be checked.
    expect(decide('enforce', { ...passing, spf: 'temperror' })).toBe('accept');
  });

  it('enforce defers (4xx) when a temperror could be the pass DMARC missed, or the policy is unknown', () => {
    expect(decide('enforce', { ...failing, spf: 'temperror' })).toBe('defer');
    expect(decide('enforce', { ...failing, dkim: [{ result: 'fail', domain: 'a.test' }, { result: 'temperror', domain: 'sender.test' }] })).toBe('defer');
    expect(decide('enforce', { ...failing, dmarc: 'temperror', dmarcPolicy: null })).toBe('defer');
    expect(decide('enforce', unknownVerdicts('mx', 'deadline').verdicts)).toBe('defer');
    expect(decide('enforce', unknownVerdicts('mx', 'error').verdicts)).toBe('defer');
  });

  it('replies: 550 5.7.1 naming the domain for a refusal, 451 4.7.0 when unsure, none to accept', () => {
    const refused = replyFor('reject', failing);
    expect(refused).toMatchObject({ responseCode: 550, reason: 'dmarc_reject' });
    expect(refused?.message).toMatch(/^5\.7\.1 .*DMARC policy \(p=reject\) of sender\.test/);
    expect(replyFor('defer', failing)).toMatchObject({ responseCode: 451, reason: 'auth_unsure' });
    expect(authUnsure().message).toMatch(/^4\.7\.0 /);
    expect(dmarcRejected(null).message).toMatch(/its From domain/);
    expect(replyFor('accept', passing)).toBeNull();
  });
});

describe('Authentication-Results header', () => {
  it('names the edge, one entry per line, CRLF at the end', () => {
    expect(authResultsHeader('mx.postern.test', ['spf=pass smtp.mailfrom=a@b.test', 'dkim=none'])).toEqual({
      value: 'mx.postern.test;\r\n\tspf=pass smtp.mailfrom=a@b.test;\r\n\tdkim=none',
      header: 'Authentication-Results: mx.postern.test;\r\n\tspf=pass smtp.mailfrom=a@b.test;\r\n\tdkim=none\r\n',
    });
    expect(authResultsHeader('mx.postern.test', []).value).toBe('mx.postern.test; none');
  });

  it('an authserv-id that is not a token is made one', () => {
    expect(authResultsHeader('mx postern;\r\nX: y', []).value).toBe('mx?postern???X??y; none');
  });

  it('whatever mailauth quotes from the message (CR/LF, NUL, controls, lone surrogates, 5,000 characters) stays one short line per entry', () => {
    const hostile = `dkim=neutral (bad\r\nX-Injected: yes\u0000\u0007\ud800) header.d=${'d'.repeat(5_000)}`;
    const result = summarize(
      {
        dkim: { results: [{ signingDomain: 'evil\u0000.test\r\nX: y', status: { result: 'neutral' }, info: hostile }] },
        spf: { status: { result: 'pass' }, info: 'spf=pass smtp.mailfrom=a@b.test' },
        dmarc: false,
        arc: false,
      } as unknown as AuthenticateResult,
      'mx.postern.test',
      0,
    );
    const lines = result.header.slice(0, -2).split('\r\n');
    expect(lines).toHaveLength(3);
    for (const line of lines) expect(line.length).toBeLessThan(998);
    expect(result.header).not.toMatch(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]|X-Injected: yes\r/);
    expect(result.header).not.toMatch(/[\ud800-\udfff]/);
    expect(result.verdicts.dkim).toEqual([{ result: 'neutral', domain: 'evil\u2400.test  X: y' }]);
  });

  it('an evaluation that did not finish: every method temperror, with the reason', () => {
    const { verdicts, header } = unknownVerdicts('mx.postern.test', 'deadline');
    expect(verdicts).toMatchObject({ spf: 'temperror', dmarc: 'temperror', arc: 'temperror', incomplete: 'deadline' });
    expect(header).toBe(
      'Authentication-Results: mx.postern.test;\r\n\tspf=temperror (evaluation deadline passed);\r\n\tdkim=temperror (evaluation deadline passed);\r\n\tdmarc=temperror (evaluation deadline passed);\r\n\tarc=temperror (evaluation deadline passed)\r\n',
    );
  });
});
