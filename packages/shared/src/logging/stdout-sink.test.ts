// Log lines to a pipe nobody reads never hold a process up: a bounded queue, whole lines dropped
// and counted past it, the count said once the pipe takes lines again; and a process logging to a
// full pipe still honours SIGTERM (measured before: pino's exit-time flush waited on the full pipe
// for ever, and `npm start` left processes that ignored SIGTERM).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { fillPipe, openProbedPipe, type ProbedPipe, readAvailable } from './pipe-probe.ts';
import { createStdoutSink } from './stdout-sink.ts';

const cleanup: Array<() => void> = [];

afterEach(() => {
  for (const step of cleanup.splice(0)) step();
});

function fifo(): ProbedPipe {
  const folder = mkdtempSync(path.join(tmpdir(), 'postern-sink-'));
  const pipe = openProbedPipe(folder);
  cleanup.push(() => {
    pipe.close();
    rmSync(folder, { recursive: true, force: true });
  });
  return pipe;
}

describe.skipIf(process.platform !== 'linux')('stdout sink', () => {
  it('a full pipe: lines wait in a bounded queue, whole lines past it are dropped and counted, then said in order', async () => {
    const pipe = fifo();
    const sink = createStdoutSink({
      fd: pipe.write,
      maxQueuedBytes: 20_000,
      retryMs: 10,
      describeDrops: (dropped) => `dropped ${dropped}\n`,
    });
    const line = (n: number) => `${String(n).padStart(5, '0')} ${'y'.repeat(994)}\n`;
    for (let n = 0; n < 300; n += 1) sink.write(line(n)); // 300 kB into a 64 kB pipe: returns at once
    expect(sink.queuedBytes).toBeLessThanOrEqual(20_000 + 1_000);
    expect(sink.dropped).toBeGreaterThan(0);
    const dropped = sink.dropped;

    let received = '';
    await vi.waitFor(
      () => {
        received += readAvailable(pipe.read);
        expect(received).toMatch(/dropped \d+\n$/);
      },
      { timeout: 10_000, interval: 20 },
    );
    const lines = received.split('\n').slice(0, -1);
    const notice = lines.pop();
    expect(notice).toBe(`dropped ${dropped}`);
    // Every line arrived whole, none twice, in order: the first ones, then nothing after the drop.
    expect(lines).toEqual(Array.from({ length: 300 - dropped }, (_, n) => line(n).slice(0, -1)));
    expect(sink.queuedBytes).toBe(0);
  });

  it('a reader that keeps up again: the next line written sends what waited first, not the retry timer', () => {
    // Measured: 100,000 lines into `| node` parsing each line, which keeps up with the writer;
    // the pipe full once, lines went only every retry (64 KiB per 50 ms), and 87% were dropped.
    const pipe = fifo();
    const sink = createStdoutSink({ fd: pipe.write, retryMs: 3_600_000 }); // the timer never fires here
    const line = (n: number) => `${String(n).padStart(5, '0')} ${'w'.repeat(994)}\n`;
    let n = 0;
    while (sink.queuedBytes === 0) sink.write(line(n++)); // until the pipe is full and a line waits
    let received = readAvailable(pipe.read); // the reader takes everything the pipe holds
    sink.write(line(n++));
    expect(sink.queuedBytes).toBe(0);
    received += readAvailable(pipe.read);
    expect(received).toBe(Array.from({ length: n }, (_, k) => line(k)).join(''));
    expect(sink.dropped).toBe(0);
  });

  it("a pipe whose reader is gone: lines are dropped and counted, the write never throws", () => {
    const pipe = fifo();
    const sink = createStdoutSink({ fd: pipe.write });
    pipe.closeReader();
    sink.write('one\n');
    sink.write('two\n');
    expect(sink.dropped).toBe(2);
    expect(sink.queuedBytes).toBe(0);
  });

  it('a process logging to a full pipe nobody reads still stops on SIGTERM', async () => {
    const pipe = fifo();
    const logger = path.join(import.meta.dirname, 'logger.ts');
    const script = `
      import { createLogger } from ${JSON.stringify(logger)};
      const log = createLogger('sigterm-test', 'info', { format: 'json' });
      process.on('SIGTERM', () => { log.info('stopping'); process.exit(0); });
      log.info('ready');
      setInterval(() => log.info({ filler: 'z'.repeat(500) }, 'busy'), 1);
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', pipe.write, 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      let seen = '';
      await vi.waitFor(
        () => {
          seen += readAvailable(pipe.read);
          expect(seen, stderr).toContain('"msg":"ready"');
        },
        { timeout: 30_000, interval: 20 },
      );
      // From here nobody reads: the pipe is full, and the child keeps logging into it.
      fillPipe(pipe.write);
      child.kill('SIGTERM');
      const code = await Promise.race([exit, new Promise<string>((resolve) => setTimeout(() => resolve('still running 20 s after SIGTERM'), 20_000))]);
      expect(code, stderr).toBe(0);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });
});
