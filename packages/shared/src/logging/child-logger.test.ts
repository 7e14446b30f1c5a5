// A logger made from another names every key once on each line, however deep components nest:
// a repeated key was written twice (`"component":"stream",...,"component":"stream-doorbell"`).
import { describe, expect, it } from 'vitest';
import { childLogger } from './child-logger.ts';
import { createLogger } from './logger.ts';
import { repeatedTopLevelKeys } from './repeated-keys.ts';

function capture(): { logger: ReturnType<typeof createLogger>; lines: string[] } {
  const lines: string[] = [];
  return { lines, logger: createLogger('core', 'debug', { destination: { write: (line: string) => lines.push(line) } }) };
}

describe('childLogger', () => {
  it('a component inside a component is `outer/inner` in one key, and keeps the bindings made on the way', () => {
    const { logger, lines } = capture();
    const engine = childLogger(logger, { workerId: 'w1' });
    const stream = childLogger(engine, { component: 'stream', consumer: 'c1' });
    const doorbell = childLogger(stream, { component: 'stream-doorbell' });
    const deeper = childLogger(childLogger(doorbell, { loop: 'l1' }), { component: 'redis', role: 'notifications' });
    stream.info('from the stream');
    doorbell.info({ listener: 7 }, 'from the doorbell');
    deeper.info('deeper');
    expect(lines.map(repeatedTopLevelKeys)).toEqual([[], [], []]);
    expect(lines.map((line) => JSON.parse(line))).toEqual([
      expect.objectContaining({ app: 'core', workerId: 'w1', component: 'stream', consumer: 'c1', msg: 'from the stream' }),
      expect.objectContaining({ app: 'core', workerId: 'w1', component: 'stream/stream-doorbell', consumer: 'c1', listener: 7 }),
      expect.objectContaining({ workerId: 'w1', component: 'stream/stream-doorbell/redis', consumer: 'c1', loop: 'l1', role: 'notifications' }),
    ]);
  });

  it('another key bound again takes the inner value, once', () => {
    const { logger, lines } = capture();
    childLogger(childLogger(logger, { role: 'commands', loop: 'a' }), { role: 'notifications' }).info('x');
    expect(repeatedTopLevelKeys(lines[0] as string)).toEqual([]);
    expect(JSON.parse(lines[0] as string)).toMatchObject({ role: 'notifications', loop: 'a' });
  });

  it("refuses to bind again what every line has already (the app, the process's pid)", () => {
    const { logger } = capture();
    expect(() => childLogger(logger, { pid: 1 })).toThrow(/pid/);
    expect(() => childLogger(childLogger(logger, { component: 'x' }), { app: 'y' })).toThrow(/app/);
  });

  it("a plain pino child of a component's logger writes the key twice: what childLogger is for", () => {
    const { logger, lines } = capture();
    logger.child({ component: 'stream' }).child({ component: 'stream-doorbell' }).info('x');
    expect(repeatedTopLevelKeys(lines[0] as string)).toEqual(['component']);
  });
});
