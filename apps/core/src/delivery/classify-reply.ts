// What an attempt's outcome means: the attempt row's status, and what happens to the delivery.
// SMTP replies are classified by the rules in reply-patterns.txt (data, not code), each carrying the
// real replies it is meant for as examples; transport problems (no reply at all) by kind: a DNS
// failure is always temporary, and only the recipient domain's own answer that it takes no mail
// (null MX, no such domain: mx-relay.ts) ends a delivery without a reply. The
// operators' runbook's vocabulary (no-health-endpoints, docs/incidents.md): sent, transport_failed,
// timed_out, provider_rejected, outcome_unknown.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AttemptStatus } from '@postern/shared';
import type { SendFailure, SmtpStage } from '../relay/relay.ts';
import type { RelayVerdict } from '../relay/relay-health.ts';

export type ReplyAction = 'retry' | 'fail' | 'suppress';

export interface ReplyRule {
  pattern: RegExp;
  action: ReplyAction;
  category: string;
  line: number;
  /** "| at rcpt": the rule holds only for a reply to that step (a 552 to RCPT TO is temporary). */
  stage: SmtpStage | null;
  /** The "# example:" replies written directly above the rule. */
  examples: string[];
}

export interface Classification {
  attemptStatus: Exclude<AttemptStatus, 'sent'>;
  action: ReplyAction;
  category: string;
}

export const REPLY_PATTERNS_FILE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'reply-patterns.txt');

const EXAMPLE = /^#\s*example:\s*(.+)$/;
const STAGES: readonly SmtpStage[] = ['session', 'mail', 'rcpt', 'data', 'end_of_data'];

export function parseReplyRules(text: string, file = 'reply-patterns.txt'): ReplyRule[] {
  const rules: ReplyRule[] = [];
  let examples: string[] = [];
  text.split('\n').forEach((raw, index) => {
    const line = raw.trim();
    const example = EXAMPLE.exec(line);
    if (example) {
      examples.push(example[1] as string);
      return;
    }
    if (line === '' || line.startsWith('#')) {
      // An example belongs to the rule right below it; one followed by anything else documents nothing.
      if (examples.length > 0) throw new Error(`${file}:${index}: an example must stand directly above its rule`);
      return;
    }
    // The regex may itself contain "|": the action, category and step are the last fields.
    const match = /^(.+?)\s+\|\s+(retry|fail|suppress)\s+\|\s+([a-z0-9_]+)(?:\s+\|\s+at\s+([a-z_]+))?$/.exec(line);
    const stage = (match?.[4] ?? null) as SmtpStage | null;
    if (!match || (stage !== null && !STAGES.includes(stage))) {
      throw new Error(`${file}:${index + 1}: expected "regex | retry|fail|suppress | category", then optionally "| at ${STAGES.join('|')}"`);
    }
    const [, pattern, action, category] = match as unknown as [string, string, ReplyAction, string];
    rules.push({ pattern: new RegExp(pattern, 'i'), action, category, line: index + 1, stage, examples });
    examples = [];
  });
  if (examples.length > 0) throw new Error(`${file}: an example at the end of the file has no rule below it`);
  return rules;
}

let loaded: ReplyRule[] | null = null;
/** The shipped rules, read once (the file is part of the code, not configuration). */
export function defaultReplyRules(): ReplyRule[] {
  loaded ??= parseReplyRules(readFileSync(REPLY_PATTERNS_FILE, 'utf8'), REPLY_PATTERNS_FILE);
  return loaded;
}

/** The first rule that matches the reply, given at stage (null: not known, no staged rule holds), if any. */
export function matchReplyRule(rules: readonly ReplyRule[], code: number, enhanced: string | null, text: string, stage: SmtpStage | null = null): ReplyRule | undefined {
  const subject = `${code} ${enhanced ?? ''} ${text}`.replace(/\s+/g, ' ');
  return rules.find((candidate) => (candidate.stage === null || candidate.stage === stage) && candidate.pattern.test(subject));
}

export function classifyReply(rules: readonly ReplyRule[], code: number, enhanced: string | null, text: string, stage: SmtpStage | null = null): Classification {
  const rule = matchReplyRule(rules, code, enhanced, text, stage);
  const action: ReplyAction = rule?.action ?? (code >= 500 ? 'fail' : 'retry');
  const category = rule?.category ?? (code >= 500 ? 'permanent' : 'transient');
  // A reply that sends the delivery back to the ladder is a transient failure of this attempt;
  // a refusal that ends it (fail, suppress) is the provider's rejection.
  return { attemptStatus: action === 'retry' ? 'transport_failed' : 'provider_rejected', action, category };
}

/** Every failed send, reply or not. */
export function classifyFailure(rules: readonly ReplyRule[], failure: SendFailure): Classification {
  if (failure.reply?.code) return classifyReply(rules, failure.reply.code, failure.reply.enhanced, failure.reply.text, failure.stage ?? null);
  if (failure.kind === 'unroutable') return { attemptStatus: 'provider_rejected', action: 'fail', category: failure.category ?? 'unroutable' };
  if (failure.kind === 'dns') return { attemptStatus: 'transport_failed', action: 'retry', category: 'dns' };
  // No reply. If the whole message had been handed over when the connection timed out or broke,
  // the server may have delivered it: record that honestly (outcome_unknown) and retry, accepting
  // a possible duplicate over a possible loss (at-least-once; the stable Message-ID lets the
  // receiver de-duplicate).
  // A reply that was not one (malformed_reply, smtp-transaction.ts) keeps its category.
  if (failure.dataSent) return { attemptStatus: 'outcome_unknown', action: 'retry', category: failure.category ?? (failure.kind === 'timeout' ? 'timeout_after_data' : 'connection_lost_after_data') };
  if (failure.kind === 'timeout') return { attemptStatus: 'timed_out', action: 'retry', category: 'timeout' };
  // A relay that knows why no session came about says so (mta_sts: the domain's policy refused every host).
  return { attemptStatus: 'transport_failed', action: 'retry', category: failure.category ?? (failure.kind === 'connection' ? 'connection' : 'transport') };
}

/** Categories of replies in which a relay refuses this engine, not the recipient: relaying denied
 *  to its address, authentication it wants, its EHLO name (relay/relay-health.ts backs such a
 *  relay off). */
const REFUSES_ENGINE: ReadonlySet<string> = new Set(['relay_denied', 'relay_auth', 'helo_rejected']);

/** What a failed send to a relay says about this engine there (relay/relay-health.ts): it refuses
 *  mail from the engine, or throttles it (rate_limited); null: the reply is about the recipient or
 *  the message, or there is none. */
export function relayVerdictOf(rules: readonly ReplyRule[], failure: SendFailure): RelayVerdict {
  if (!failure.reply?.code) return null;
  const { category } = classifyReply(rules, failure.reply.code, failure.reply.enhanced, failure.reply.text, failure.stage ?? null);
  if (category === 'rate_limited') return 'throttles';
  return REFUSES_ENGINE.has(category) ? 'refuses_engine' : null;
}
