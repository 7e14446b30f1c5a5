// Memory of DKIM signing a 25 MiB message (MAIL_MTA_MAX_MESSAGE_SIZE's default) the way the engine
// does it — dkimSign over the buffer, the DKIM-Signature then sent in front of the unchanged bytes
// (apps/core/src/delivery/dkim-signer.ts, relay/smtp-relay.ts) — next to mailauth's
// DkimSignStream, which holds the whole message until it has signed it; and the ARC set of forwarded
// mail (apps/core/src/delivery/arc-seal.ts), made and sent the same way. Each runs in a process of
// its own (a clean baseline); a worker thread samples the process's RSS every millisecond (the
// main thread's event loop is busy with the stream and would starve a timer), and the line printed
// is the peak RSS growth over the process with the message already built.
//   node bench/core/dkim-sign-memory.ts
import { spawnSync } from 'node:child_process';
import { PassThrough, Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { generateDkimKeyPair } from '@postern/shared';
import { DkimSignStream } from 'mailauth/lib/dkim/sign.js';
import MailComposer from 'nodemailer/lib/mail-composer';
import { createArcSealer } from '../../apps/core/src/delivery/arc-seal.ts';
import { createMessageSigner } from '../../apps/core/src/delivery/dkim-signer.ts';

const MiB = 1024 * 1024;
const CHUNK = 64 * 1024;
const variant = process.argv[2];

if (!variant) {
  for (const name of ['engine', 'arc-seal', 'sign-stream']) {
    const child = spawnSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), name], { encoding: 'utf8' });
    process.stdout.write(child.stdout);
    if (child.status !== 0) throw new Error(`${name} failed: ${child.stderr}`);
  }
  process.exit(0);
}

const line = `${'x'.repeat(76)}\r\n`;
const raw = await new MailComposer({
  from: 'postern@example.test',
  to: 'ann@customer.test',
  subject: 'large',
  text: line.repeat(Math.ceil((25 * MiB) / line.length)),
}).compile().build();
const key = { domain: 'example.test', selector: 'bench', keyType: 'rsa2048' as const, privateKeyPem: (await generateDkimKeyPair('rsa2048')).privateKeyPem };
/** What the relay's socket does with the bytes, without a peer: takes them, keeps nothing. */
const sink = () => new Writable({ write: (_chunk, _encoding, done) => done() });
const slices = function* (buffer: Buffer) {
  for (let offset = 0; offset < buffer.length; offset += CHUNK) yield buffer.subarray(offset, offset + CHUNK);
};

const runs: Record<string, () => Promise<void>> = {
  engine: async () => {
    const signature = await createMessageSigner(async () => key).signatureFor(raw);
    await pipeline(Readable.from((function* () {
      if (signature) yield signature;
      yield* slices(raw);
    })()), sink());
  },
  'arc-seal': async () => {
    const sealer = createArcSealer({ authservId: 'mx.example.test', resolver: async () => [] });
    const set = await sealer.seal(raw, { domain: key.domain, selector: key.selector, privateKeyPem: key.privateKeyPem, algorithm: 'rsa-sha256' });
    await pipeline(Readable.from((function* () {
      if (set) yield set;
      yield* slices(raw);
    })()), sink());
  },
  'sign-stream': async () => {
    const source = new PassThrough();
    const done = pipeline(source, new DkimSignStream({ signatureData: [{ signingDomain: key.domain, selector: key.selector, privateKey: key.privateKeyPem }] } as never), sink());
    for (const chunk of slices(raw)) source.write(chunk);
    source.end();
    await done;
  },
};
const labels: Record<string, string> = {
  engine: 'engine: dkimSign, signature sent before raw',
  'arc-seal': 'engine: createSeal, ARC set sent before raw',
  'sign-stream': 'mailauth DkimSignStream (holds the message)',
};

(globalThis as { gc?: () => void }).gc?.();
const sampler = new Worker(
  `const { parentPort } = require('node:worker_threads'); let peak = 0;
   const timer = setInterval(() => { peak = Math.max(peak, process.memoryUsage.rss()); }, 1);
   parentPort.on('message', () => { clearInterval(timer); parentPort.postMessage(Math.max(peak, process.memoryUsage.rss())); });`,
  { eval: true },
);
await new Promise((resolve) => setTimeout(resolve, 50));
const before = process.memoryUsage.rss();
const t0 = performance.now();
await (runs[variant] as () => Promise<void>)();
const ms = performance.now() - t0;
const peak = await new Promise<number>((resolve) => {
  sampler.once('message', resolve);
  sampler.postMessage('stop');
});
await sampler.terminate();
console.log(`${(labels[variant] ?? variant).padEnd(44)} message ${(raw.length / MiB).toFixed(1)} MiB  peak RSS growth ${((peak - before) / MiB).toFixed(1)} MiB  ${ms.toFixed(0)} ms`);
