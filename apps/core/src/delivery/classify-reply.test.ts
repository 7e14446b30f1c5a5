// What a relay's answer does to a delivery: the reply rules (reply-patterns.txt) and the retry
// ladder. Every example reply in the rules file is classified here, so a rule comes with the real
// replies it is meant for, and a rule that an earlier one shadows is caught.
import { describe, expect, it } from 'vitest';
import { isWellFormedReply, parseReply } from '../relay/relay.ts';
import { failureOf } from '../relay/smtp-transaction.ts';
import { classifyFailure, classifyReply, defaultReplyRules, matchReplyRule, parseReplyRules, relayVerdictOf } from './classify-reply.ts';
import { DEFAULT_RETRY_LADDER_MS, nextStep, retryLadder } from './retry-ladder.ts';

const rules = defaultReplyRules();

describe('classifyReply (reply-patterns.txt)', () => {
  it.each([
    ['451 4.7.1 greylisted, try again later', 'retry', 'greylisted', 'transport_failed'],
    ['421 4.4.2 too busy', 'retry', 'transient', 'transport_failed'],
    ['550 5.1.1 <x@y.z>: Recipient address rejected: User unknown', 'fail', 'bad_recipient', 'provider_rejected'],
    ['552 5.2.2 mailbox full', 'retry', 'mailbox_full', 'transport_failed'],
    ['554 5.7.1 message rejected as spam', 'fail', 'policy', 'provider_rejected'],
    ['535 5.7.8 authentication failed', 'retry', 'relay_auth', 'transport_failed'],
    ['550 5.7.1 recipient suppressed by provider', 'suppress', 'provider_suppressed', 'provider_rejected'],
    ['554 transaction failed', 'fail', 'permanent', 'provider_rejected'],
  ])('%s -> %s / %s', (line, action, category, attemptStatus) => {
    const reply = parseReply(line);
    if (!reply?.code) throw new Error('unparsed');
    expect(classifyReply(rules, reply.code, reply.enhanced, reply.text)).toEqual({ action, category, attemptStatus });
  });

  // A real Postfix 3.7 relay's answers (docs/core.md, "Against a real Postfix"), as smtp-relay.ts
  // reports them: what they say about the engine at the relay (relay/relay-health.ts) and the attempt.
  it.each([
    ['421 4.7.0 relay.relaypeers.test Error: too many connections from 127.0.0.1', undefined, 'throttles', 'rate_limited'],
    ['450 4.7.1 Error: too much mail from 127.0.0.1', 'MAIL FROM', 'throttles', 'rate_limited'],
    ['554 5.7.1 <ext1@elsewhere.example>: Relay access denied', 'RCPT TO', 'refuses_engine', 'relay_denied'],
    ['504 5.5.2 <vm>: Helo command rejected: need fully-qualified hostname', 'RCPT TO', 'refuses_engine', 'helo_rejected'],
    ['530 5.7.0 Must issue a STARTTLS command first', 'MAIL FROM', 'refuses_engine', 'relay_auth'],
    ['550 5.1.1 <unknown1@dest.relaypeers.test>: Recipient address rejected: User unknown', 'RCPT TO', null, 'bad_recipient'],
    ['450 4.7.1 <defer1@dest.relaypeers.test>: Recipient address rejected: Access denied', 'RCPT TO', null, 'transient'],
    ['552 5.3.4 Error: message file too big', 'DATA', null, 'message_too_large'],
  ])('Postfix: %s (to %s) -> %s, %s', (response, command, verdict, category) => {
    const error = Object.assign(new Error(response), { code: 'EENVELOPE', response, responseCode: Number(response.slice(0, 3)), command });
    const failure = failureOf(error, false, false);
    expect(relayVerdictOf(rules, failure)).toBe(verdict);
    expect(classifyFailure(rules, failure).category).toBe(category);
    expect(relayVerdictOf(rules, { ...failure, reply: null })).toBeNull();
  });

  it('classifies a transport failure by whether the data had been sent', () => {
    const base = { reply: null, message: 'x', interrupted: false };
    expect(classifyFailure(rules, { ...base, kind: 'timeout', dataSent: false })).toMatchObject({ attemptStatus: 'timed_out', action: 'retry' });
    expect(classifyFailure(rules, { ...base, kind: 'timeout', dataSent: true })).toMatchObject({ attemptStatus: 'outcome_unknown', action: 'retry' });
    expect(classifyFailure(rules, { ...base, kind: 'connection', dataSent: false })).toMatchObject({ attemptStatus: 'transport_failed', action: 'retry' });
  });

  it('retries every DNS failure and fails only on the domain saying it takes no mail', () => {
    const base = { reply: null, message: 'x', interrupted: false, dataSent: false };
    expect(classifyFailure(rules, { ...base, kind: 'dns' })).toEqual({ attemptStatus: 'transport_failed', action: 'retry', category: 'dns' });
    expect(classifyFailure(rules, { ...base, kind: 'unroutable', category: 'null_mx' })).toEqual({ attemptStatus: 'provider_rejected', action: 'fail', category: 'null_mx' });
    expect(classifyFailure(rules, { ...base, kind: 'unroutable', category: 'no_such_domain' })).toMatchObject({ action: 'fail', category: 'no_such_domain' });
  });

  it('refuses a malformed rules file with its line number', () => {
    expect(() => parseReplyRules('# ok\n^5 | explode | x\n')).toThrow(/:2:/);
  });

  it('refuses an example that does not stand directly above a rule', () => {
    expect(() => parseReplyRules('# example: 550 5.1.1 no such user\n\n^5 | fail | x\n')).toThrow(/:1: an example must stand directly above its rule/);
    expect(() => parseReplyRules('^5 | fail | x\n# example: 550 5.1.1 no such user')).toThrow(/no rule below it/);
  });

  it('takes a reply that is not one (no code, or lines that disagree) for no reply: unknown after the data, never a refusal', () => {
    expect(['250', '250 ok', '250-a\n250 b', '550-5.7.1 a\r\n550 5.7.1 b', '600 what'].map(isWellFormedReply)).toEqual([true, true, true, true, true]);
    expect(['2', '', '25 ok', '2500 ok', '250-a\n550 b', '550-no\n250 yes', '250-a\nb'].map(isWellFormedReply)).toEqual([false, false, false, false, false, false, false]);
    const mixed = Object.assign(new Error('Message failed: 550-no\n250 yes'), { code: 'EMESSAGE', response: '550-no\n250 yes', responseCode: 550 });
    expect(failureOf(mixed, true, false)).toMatchObject({ reply: null, dataSent: true });
    expect(classifyFailure(rules, failureOf(mixed, true, false))).toMatchObject({ attemptStatus: 'outcome_unknown', action: 'retry' });
    const refused = Object.assign(new Error('Message failed: 550 5.7.1 no'), { code: 'EMESSAGE', response: '550 5.7.1 no', responseCode: 550 });
    expect(classifyFailure(rules, failureOf(refused, true, false))).toMatchObject({ attemptStatus: 'provider_rejected', action: 'fail' });
  });

  // RFC 5321 4.5.3.1.10: a 552 to RCPT TO (historically "too many recipients") SHOULD be taken as
  // the 452 it stands for; a 552 to the end of data (5.3.4, message too large) is permanent.
  it('knows at which step a reply came, from what nodemailer says of the command, and retries a 552 to RCPT TO', () => {
    const rcpt = Object.assign(new Error("Can't send mail - all recipients were rejected: 552 5.5.3 too many recipients"), {
      code: 'EENVELOPE',
      command: 'RCPT TO',
      response: '552 5.5.3 too many recipients',
      responseCode: 552,
    });
    expect(failureOf(rcpt, false, false)).toMatchObject({ kind: 'reply', stage: 'rcpt' });
    expect(classifyFailure(rules, failureOf(rcpt, false, false))).toEqual({ attemptStatus: 'transport_failed', action: 'retry', category: 'too_many_recipients' });
    const tooLarge = Object.assign(new Error('Message failed: 552 5.3.4 Message size exceeds fixed limit'), {
      code: 'EMESSAGE',
      command: 'DATA',
      response: '552 5.3.4 Message size exceeds fixed limit',
      responseCode: 552,
    });
    expect(failureOf(tooLarge, true, false)).toMatchObject({ kind: 'reply', stage: 'end_of_data' });
    expect(classifyFailure(rules, failureOf(tooLarge, true, false))).toEqual({ attemptStatus: 'provider_rejected', action: 'fail', category: 'message_too_large' });
    const dataCommand = Object.assign(new Error('Data command failed: 552 5.3.4 too big'), { code: 'EENVELOPE', command: 'DATA', response: '552 5.3.4 too big', responseCode: 552 });
    expect(failureOf(dataCommand, false, false)).toMatchObject({ stage: 'data' });
    const mail = Object.assign(new Error('Mail command failed: 552 5.3.4 too big'), { code: 'EENVELOPE', command: 'MAIL FROM', response: '552 5.3.4 too big', responseCode: 552 });
    expect(failureOf(mail, false, false)).toMatchObject({ stage: 'mail' });
    expect(classifyFailure(rules, failureOf(mail, false, false))).toMatchObject({ action: 'fail', category: 'message_too_large' });
    // A 552 that says the mailbox is full keeps its own category at RCPT TO too.
    const full = { ...rcpt, response: '552 5.2.2 mailbox full', message: 'x' };
    expect(classifyFailure(rules, failureOf(full, false, false))).toMatchObject({ action: 'retry', category: 'mailbox_full' });
  });

  it('reads a rule limited to one step ("| at rcpt") and applies it only there', () => {
    const staged = parseReplyRules('# example: 552 5.5.3 too many recipients\n^552 | retry | too_many_recipients | at rcpt\n# example: 552 x\n^5 | fail | permanent\n');
    expect(staged[0]).toMatchObject({ stage: 'rcpt', category: 'too_many_recipients' });
    expect(classifyReply(staged, 552, null, 'x', 'rcpt')).toMatchObject({ action: 'retry' });
    expect(classifyReply(staged, 552, null, 'x', 'end_of_data')).toMatchObject({ action: 'fail' });
    expect(classifyReply(staged, 552, null, 'x', null)).toMatchObject({ action: 'fail' });
    expect(() => parseReplyRules('^5 | fail | x | at nowhere\n')).toThrow(/:1:/);
  });

  it('parses replies with and without enhanced codes', () => {
    expect(parseReply('250 2.0.0 Ok: queued as ABC')).toEqual({ code: 250, enhanced: '2.0.0', text: 'Ok: queued as ABC' });
    expect(parseReply('450 mailbox busy')).toEqual({ code: 450, enhanced: null, text: 'mailbox busy' });
  });
});

describe('the examples in reply-patterns.txt', () => {
  it('give every rule at least one real reply', () => {
    expect(rules.filter((rule) => rule.examples.length === 0).map((rule) => `line ${rule.line}: ${rule.pattern.source}`)).toEqual([]);
  });

  // First match wins: an example must reach its own rule, not be taken by an earlier one.
  // An example of a rule limited to one step is a reply given at that step.
  it.each(rules.flatMap((rule) => rule.examples.map((example) => [rule.line, example, rule.category, rule.stage] as const)))(
    'line %i: %s -> %s (at %s)',
    (line, example, category, stage) => {
      const reply = parseReply(example);
      if (!reply?.code) throw new Error(`not an SMTP reply: ${example}`);
      expect(matchReplyRule(rules, reply.code, reply.enhanced, reply.text, stage)).toMatchObject({ line, category });
    },
  );
});

describe('retry ladder', () => {
  it('retries with the written waits, then dead-letters after the last', () => {
    const ladder = retryLadder(null);
    expect(ladder.maxAttempts).toBe(DEFAULT_RETRY_LADDER_MS.length + 1);
    expect(nextStep(ladder, 1)).toEqual({ action: 'retry', waitMs: 60_000 });
    expect(nextStep(ladder, ladder.maxAttempts - 1)).toMatchObject({ action: 'retry' });
    expect(nextStep(ladder, ladder.maxAttempts)).toEqual({ action: 'dead_letter' });
  });

  it('adds up to the cumulative times in its comment (about 4 days 4 hours, RFC 5321 4.5.4.1)', () => {
    const total = DEFAULT_RETRY_LADDER_MS.reduce((sum, wait) => sum + wait, 0);
    expect(total).toBe((99 * 60 + 51) * 60_000);
  });

  it('takes an override (tests, staging)', () => {
    const ladder = retryLadder([100, 200]);
    expect(nextStep(ladder, 2)).toEqual({ action: 'retry', waitMs: 200 });
    expect(nextStep(ladder, 3)).toEqual({ action: 'dead_letter' });
  });
});
