import { describe, expect, it, vi } from 'vitest';
import { type ErrorLimitedConnection, installErrorLimit } from './session-error-limit.ts';

function fakeConnection() {
  const sent: string[] = [];
  const ran: string[] = [];
  const connection: ErrorLimitedConnection = {
    send(code, data) {
      sent.push(`${code} ${String(data)}`);
    },
    _onCommand(command) {
      ran.push(command.toString());
    },
  };
  return { connection, sent, ran };
}

describe('installErrorLimit', () => {
  it('delays commands from the soft limit on, and answers 421 4.7.0 at the hard limit', () => {
    vi.useFakeTimers();
    try {
      const { connection, sent, ran } = fakeConnection();
      const events = { onDelay: vi.fn(), onHardLimit: vi.fn() };
      installErrorLimit(connection, { softErrorLimit: 2, hardErrorLimit: 3, errorSleepMs: 1_000 }, events);
      connection.send(250, 'ok');
      connection.send(550, 'no');
      connection._onCommand(Buffer.from('A'));
      expect(ran).toEqual(['A']);
      connection.send(500, 'bad');
      connection._onCommand(Buffer.from('B'));
      expect(ran).toEqual(['A']);
      vi.advanceTimersByTime(999);
      expect(ran).toEqual(['A']);
      vi.advanceTimersByTime(1);
      expect(ran).toEqual(['A', 'B']);
      expect(events.onDelay).toHaveBeenCalledTimes(1);
      connection.send(501, 'syntax');
      expect(sent.slice(-2)).toEqual(['501 syntax', '421 4.7.0 Error: too many errors']);
      expect(events.onHardLimit).toHaveBeenCalledWith(3);
    } finally {
      vi.useRealTimers();
    }
  });

  it('does not count 421 replies, and forgives the errors once a message is delivered', () => {
    const { connection, sent } = fakeConnection();
    const count = installErrorLimit(connection, { softErrorLimit: 5, hardErrorLimit: 2, errorSleepMs: 1 }, { onDelay() {}, onHardLimit() {} });
    connection.send(550, 'no');
    count.delivered();
    connection.send(421, 'bye');
    connection.send(550, 'no');
    expect(sent).toEqual(['550 no', '421 bye', '550 no']);
    connection.send(550, 'no');
    expect(sent.at(-1)).toBe('421 4.7.0 Error: too many errors');
  });
});
