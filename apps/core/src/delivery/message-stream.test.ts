// How nodemailer's message stream (MimeNode.createReadStream, which composing mail builds on) ends
// and fails. patches/nodemailer+10.6.0.patch joins its stages without stream.pipeline(), whose
// finishing aborted an AbortController — a DOMException with a stack trace — for every message
// composed; these tests hold the patched join to what pipeline() guaranteed: every error reaches the
// returned stream once, a failing stage stops the sources, and a reader that destroys the stream
// early stops them too. The first test fails on an install where the patch did not apply.
import { PassThrough, Readable, Transform } from 'node:stream';
import MailComposer from 'nodemailer/lib/mail-composer';
import { afterEach, describe, expect, it, vi } from 'vitest';

afterEach(() => {
  vi.restoreAllMocks();
});

/** A source that hands out `chunk` every time it is read, until destroyed. */
function endless(chunk: string): Readable {
  return new Readable({
    read() {
      setImmediate(() => this.push(chunk));
    },
  });
}

function composer(attachment: Readable | null): MailComposer {
  return new MailComposer({
    from: 'postern@sender.example',
    to: 'someone@receiver.example',
    subject: 'Stream test',
    text: 'Hello.',
    messageId: '<stream-test@sender.example>',
    date: new Date(0),
    baseBoundary: 'streamtest',
    ...(attachment ? { attachments: [{ filename: 'a.bin', content: attachment }] } : {}),
  });
}

/** The 'error' events `stream` emits until it closes. */
function errorsUntilClosed(stream: NodeJS.ReadableStream & { destroyed: boolean }): Promise<Error[]> {
  const errors: Error[] = [];
  stream.on('error', (error: Error) => errors.push(error));
  return new Promise((resolve) => stream.once('close', () => setImmediate(() => resolve(errors))));
}

describe("nodemailer's message stream", () => {
  it('builds a message without aborting an AbortController (no DOMException per message)', async () => {
    const abort = vi.spyOn(AbortController.prototype, 'abort');
    const raw = await composer(null).compile().build();
    expect(raw.toString()).toContain('Subject: Stream test');
    expect(raw.toString()).toMatch(/\r\n$/);
    expect(abort).not.toHaveBeenCalled();
  });

  it('rejects the build with the error of a source that fails, once, and closes the stream', async () => {
    const source = endless('x'.repeat(100));
    setTimeout(() => source.destroy(new Error('disk gone')), 20);
    const stream = composer(source).compile().createReadStream();
    stream.resume();
    const errors = await errorsUntilClosed(stream);
    expect(errors.map((error) => error.message)).toEqual(['disk gone']);
    const failing = endless('y');
    failing.once('data', () => failing.destroy(new Error('read failed')));
    await expect(composer(failing).compile().build()).rejects.toThrow('read failed');
  });

  it('stops reading the sources when the reader destroys the stream early', async () => {
    const source = endless('z'.repeat(1000));
    const stream = composer(source).compile().createReadStream();
    stream.once('data', () => stream.destroy());
    const errors = await errorsUntilClosed(stream);
    expect(errors).toEqual([]);
    await vi.waitFor(() => expect(source.destroyed).toBe(true), { timeout: 2_000 });
  });

  it('carries the error of a failing transform stage to the stream and stops the sources', async () => {
    const source = endless('w'.repeat(100));
    const node = composer(source).compile();
    let seen = 0;
    node.transform(
      () =>
        new Transform({
          transform(chunk, _encoding, callback) {
            seen += 1;
            callback(seen === 3 ? new Error('transform failed') : null, chunk);
          },
        }),
    );
    const stream = node.createReadStream();
    stream.resume();
    const errors = await errorsUntilClosed(stream);
    expect(errors.map((error) => error.message)).toEqual(['transform failed']);
    await vi.waitFor(() => expect(source.destroyed).toBe(true), { timeout: 2_000 });
  });

  it('fails the stream when a transform stage closes before it finished', async () => {
    const source = endless('v'.repeat(100));
    const node = composer(source).compile();
    const stage = new PassThrough();
    node.transform(stage);
    const stream = node.createReadStream();
    stream.resume();
    stream.once('data', () => stage.destroy());
    const errors = await errorsUntilClosed(stream);
    expect(errors.map((error) => (error as NodeJS.ErrnoException).code)).toEqual(['ERR_STREAM_PREMATURE_CLOSE']);
    await vi.waitFor(() => expect(source.destroyed).toBe(true), { timeout: 2_000 });
  });

  it('turns line breaks into the newline asked for through the same join', async () => {
    const raw = await new MailComposer({ from: 'a@sender.example', to: 'b@receiver.example', text: 'one\ntwo\n', newline: 'windows' }).compile().build();
    expect(raw.toString()).toContain('one\r\ntwo\r\n');
    expect(raw.toString()).not.toMatch(/[^\r]\n/);
  });
});
