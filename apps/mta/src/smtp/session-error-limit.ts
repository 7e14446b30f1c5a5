// Errors per session, as Postfix counts them (smtpd_soft_error_limit = 10, smtpd_error_sleep_time
// = 1s, smtpd_hard_error_limit = 20): every 4xx/5xx reply the session earns — refused recipients
// (a directory harvest is 200 × 550), unknown commands, syntax errors, bad sequences — counts. From
// the soft limit on, each following command is answered only after the error sleep, which makes a
// harvest slow and costs an honest client with a typo nothing; at the hard limit the edge answers
// 421 4.7.0 and closes. As in Postfix, the count is of errors "without delivering mail": a message
// accepted starts it again. Installed on each connection's own methods (no shared state): smtp-server
// writes every reply through send() and reads every command through _onCommand().

type Send = (code: number, data?: string | string[] | null, context?: string | false) => void;
type OnCommand = (command: Buffer, callback?: () => void) => void;

export interface ErrorLimitedConnection {
  send: Send;
  _onCommand: OnCommand;
  _closing?: boolean;
  _closed?: boolean;
}

export interface ErrorLimits {
  softErrorLimit: number;
  hardErrorLimit: number;
  errorSleepMs: number;
}

export interface ErrorLimitEvents {
  /** Each reply delayed past the soft limit. */
  onDelay(): void;
  /** The session reached the hard limit and is being closed. */
  onHardLimit(errors: number): void;
}

export interface ErrorCount {
  /** A message was accepted in this session: its errors so far are forgiven. */
  delivered(): void;
}

export function installErrorLimit(connection: ErrorLimitedConnection, limits: ErrorLimits, events: ErrorLimitEvents): ErrorCount {
  const send = connection.send;
  const onCommand = connection._onCommand;
  let errors = 0;
  let cutOff = false;
  connection.send = function limitedSend(this: ErrorLimitedConnection, code, data, context) {
    send.call(this, code, data, context);
    // 421 closes the session by itself; nothing more to count.
    if (code < 400 || code === 421 || cutOff) return;
    errors += 1;
    if (errors >= limits.hardErrorLimit) {
      cutOff = true;
      events.onHardLimit(errors);
      // smtp-server closes the connection after any 421 (RFC 5321 3.8).
      send.call(this, 421, '4.7.0 Error: too many errors', false);
    }
  };
  connection._onCommand = function delayedCommand(this: ErrorLimitedConnection, command, callback) {
    if (errors < limits.softErrorLimit || cutOff) {
      onCommand.call(this, command, callback);
      return;
    }
    events.onDelay();
    setTimeout(() => {
      if (this._closing || this._closed) return;
      onCommand.call(this, command, callback);
    }, limits.errorSleepMs);
  };
  return {
    delivered() {
      if (!cutOff) errors = 0;
    },
  };
}
