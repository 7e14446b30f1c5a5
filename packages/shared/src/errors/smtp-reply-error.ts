// An SMTP reply as an error: the basic code (RFC 5321) and the enhanced status code (RFC 3463).
// smtp-server sends `responseCode` and the message of an error it is given; an error WITHOUT a
// responseCode becomes a 550 there, which is exactly the wrong answer when we are merely unsure
// (stale-alias-table, docs/incidents.md). Throw this type, never a bare Error, from anything a sender's reply depends on.

export class SmtpReplyError extends Error {
  readonly responseCode: number;
  readonly enhancedCode: string;

  constructor(responseCode: number, enhancedCode: string, text: string, options?: { cause?: unknown }) {
    if (!Number.isInteger(responseCode) || responseCode < 400 || responseCode > 599) {
      throw new RangeError(`SMTP error reply code must be 4xx or 5xx, got ${responseCode}`);
    }
    if (!/^[45]\.\d{1,3}\.\d{1,3}$/.test(enhancedCode) || enhancedCode[0] !== String(responseCode)[0]) {
      throw new RangeError(`enhanced status ${enhancedCode} does not match reply ${responseCode}`);
    }
    // A reply is an answer, not a fault: no stack trace is captured for it (capturing one was most
    // of its cost, about 5 µs a reply, paid on every refused RCPT). The cause keeps its own.
    const stackTraceLimit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      // smtp-server writes `${responseCode} ${message}`; the enhanced code leads the text.
      super(`${enhancedCode} ${text}`, options);
    } finally {
      Error.stackTraceLimit = stackTraceLimit;
    }
    this.name = 'SmtpReplyError';
    this.responseCode = responseCode;
    this.enhancedCode = enhancedCode;
  }

  get isPermanent(): boolean {
    return this.responseCode >= 500;
  }

  /** The reply line as a client sees it, e.g. "451 4.3.0 Temporary lookup failure". */
  get reply(): string {
    return `${this.responseCode} ${this.message}`;
  }
}
