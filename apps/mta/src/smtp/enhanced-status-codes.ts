// smtp-server (with ENHANCEDSTATUSCODES advertised) prefixes every reply with an enhanced code of
// its own choosing: for an application error it maps the basic code (554 -> 5.6.0, 452 -> 4.2.2,
// 552 -> 5.2.2), and the success of DATA is always 2.6.0. Our replies carry the precise code at the
// head of their text (SmtpReplyError: "4.3.0 Temporary ..."), which would then appear twice
// ("451 4.3.0 4.3.0 ..."). This hook makes smtp-server leave a reply alone when its text already
// leads with an enhanced code of the same class, so the code appears exactly once, right after the
// basic code. Replies smtp-server writes itself (syntax errors, 250 Accepted) keep its mapping.
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';

const LEADING_ENHANCED_CODE = /^([245])\.\d{1,3}\.\d{1,3} /;

type Send = (code: number, data?: string | string[] | null, context?: string | false) => void;

const PATCHED = Symbol.for('postern.mta.enhancedCodePassThrough');

/** True when smtp-server must not add an enhanced code of its own to this reply. */
export function carriesOwnEnhancedCode(code: number, data: unknown): boolean {
  if (typeof data !== 'string') return false;
  const match = LEADING_ENHANCED_CODE.exec(data);
  return match !== null && match[1] === String(code)[0];
}

/** Idempotent; installed once per process before any server starts. */
export function installEnhancedCodePassThrough(): void {
  const prototype = SMTPConnection.prototype as unknown as { send: Send; [PATCHED]?: true };
  if (prototype[PATCHED]) return;
  if (typeof prototype.send !== 'function') {
    // A future smtp-server without this method would silently double the codes again: fail loudly.
    throw new Error('smtp-server: SMTPConnection.prototype.send not found; check the enhanced-code hook');
  }
  const original = prototype.send;
  prototype.send = function send(this: unknown, code, data, context) {
    return original.call(this, code, data, carriesOwnEnhancedCode(code, data) ? false : context);
  };
  prototype[PATCHED] = true;
}
