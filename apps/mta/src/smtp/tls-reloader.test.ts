import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createLogger, prometheus } from '@postern/shared';
import { afterAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { createTlsCertificateMetrics } from '../metrics.ts';
import { loadTlsCredentials, type TlsCredentials } from './tls-credentials.ts';
import { EXPIRY_WARNING_MS, type TlsReloader, watchTlsCredentials } from './tls-reloader.ts';

const dir = mkdtempSync(path.join(os.tmpdir(), 'postern-tls-reload-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Pair {
  cert: Buffer;
  key: Buffer;
  fingerprint: string;
  notAfter: Date;
}

/** A self-signed pair made by openssl (Node parses X.509 but does not issue it). */
function makePair(name: string, days: number): Pair {
  const certFile = path.join(dir, `${name}.crt`);
  const keyFile = path.join(dir, `${name}.key`);
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', `/CN=${name}`, '-days', String(days), '-keyout', keyFile, '-out', certFile],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const cert = readFileSync(certFile);
  const leaf = new X509Certificate(cert);
  return { cert, key: readFileSync(keyFile), fingerprint: leaf.fingerprint256, notAfter: new Date(leaf.validTo) };
}

const first = makePair('mx-first.postern.test', 90);
const renewed = makePair('mx-renewed.postern.test', 90);
const files = { certFile: path.join(dir, 'live-cert.pem'), keyFile: path.join(dir, 'live-key.pem') };

function install(cert: Buffer | string, key: Buffer | string): void {
  writeFileSync(files.certFile, cert);
  writeFileSync(files.keyFile, key);
}

interface Watched {
  reloader: TlsReloader;
  applied: TlsCredentials[];
  logs: Array<{ level: number; msg: string; [key: string]: unknown }>;
  metric(name: string): Promise<prometheus.MetricValue<string>[]>;
  clock: { now: number };
}

const watching: TlsReloader[] = [];
afterAll(() => {
  for (const reloader of watching) reloader.stop();
});

async function watch(options: { intervalMs?: number; now?: number } = {}): Promise<Watched> {
  const registry = new prometheus.Registry();
  const logs: Watched['logs'] = [];
  const logger = createLogger('mta-test', 'info', { destination: { write: (line: string) => logs.push(JSON.parse(line)) } });
  const applied: TlsCredentials[] = [];
  const clock = { now: options.now ?? Date.now() };
  const reloader = watchTlsCredentials({
    files,
    current: await loadTlsCredentials(files),
    intervalMs: options.intervalMs ?? 0,
    apply: (credentials) => applied.push(credentials),
    logger,
    metrics: createTlsCertificateMetrics(registry),
    now: () => clock.now,
  });
  watching.push(reloader);
  return {
    reloader,
    applied,
    logs,
    clock,
    metric: async (name) => (await registry.getSingleMetric(name)?.get())?.values ?? [],
  };
}

const sampleOf = (values: prometheus.MetricValue<string>[], labels: Record<string, string> = {}) =>
  values.find((value) => Object.entries(labels).every(([label, wanted]) => value.labels[label] === wanted))?.value;

beforeEach(() => install(first.cert, first.key));

describe('watchTlsCredentials: a renewed STARTTLS certificate is presented without a restart', () => {
  it('reports the certificate in use and its expiry; files unchanged change nothing', async () => {
    const watched = await watch();
    expect(sampleOf(await watched.metric('mail_mta_tls_certificate_not_after_seconds'))).toBe(first.notAfter.getTime() / 1_000);
    expect(watched.logs.find((log) => log.msg === 'STARTTLS certificate in use')).toMatchObject({ tls: { fingerprint: first.fingerprint, subject: 'CN=mx-first.postern.test' } });
    expect(await watched.reloader.check()).toBe('unchanged');
    expect(watched.applied).toEqual([]);
  });

  it('a renewed pair is applied, counted and logged with the one it replaces', async () => {
    const watched = await watch();
    install(renewed.cert, renewed.key);
    expect(await watched.reloader.check()).toBe('applied');
    expect(watched.applied.map((credentials) => credentials.fingerprint)).toEqual([renewed.fingerprint]);
    expect(sampleOf(await watched.metric('mail_mta_tls_certificate_not_after_seconds'))).toBe(renewed.notAfter.getTime() / 1_000);
    expect(sampleOf(await watched.metric('mail_mta_tls_certificate_reloads_total'), { outcome: 'applied' })).toBe(1);
    expect(watched.logs.find((log) => log.msg.startsWith('STARTTLS certificate reloaded'))).toMatchObject({
      tls: { fingerprint: renewed.fingerprint },
      previous: { fingerprint: first.fingerprint },
    });
    // Applied once: the same files again are unchanged.
    expect(await watched.reloader.check()).toBe('unchanged');
    expect(watched.applied).toHaveLength(1);
  });

  it('a renewal caught half written (new certificate, old key) waits for the next check, with no error', async () => {
    const watched = await watch();
    writeFileSync(files.certFile, renewed.cert);
    expect(await watched.reloader.check()).toBe('pending');
    expect(watched.applied).toEqual([]);
    writeFileSync(files.keyFile, renewed.key);
    expect(await watched.reloader.check()).toBe('applied');
    expect(watched.logs.filter((log) => log.level >= 50)).toEqual([]);
    expect(sampleOf(await watched.metric('mail_mta_tls_certificate_files_refused'))).toBe(0);
  });

  it('an unusable pair that stays is refused once, loudly, and the certificate in use is kept', async () => {
    const watched = await watch();
    install(renewed.cert, first.key);
    expect(await watched.reloader.check()).toBe('pending');
    expect(await watched.reloader.check()).toBe('refused');
    expect(await watched.reloader.check()).toBe('refused');
    expect(watched.applied).toEqual([]);
    const errors = watched.logs.filter((log) => log.level >= 50);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({
      inUse: { fingerprint: first.fingerprint },
      problems: [expect.stringContaining('are not a usable certificate and key')],
    });
    expect(sampleOf(await watched.metric('mail_mta_tls_certificate_files_refused'))).toBe(1);
    expect(sampleOf(await watched.metric('mail_mta_tls_certificate_reloads_total'), { outcome: 'refused' })).toBe(1);
    // Put right: the gauge goes back to 0.
    install(first.cert, first.key);
    expect(await watched.reloader.check()).toBe('unchanged');
    expect(sampleOf(await watched.metric('mail_mta_tls_certificate_files_refused'))).toBe(0);
  });

  it('files gone or not PEM are refused the same way, naming the variable', async () => {
    const watched = await watch();
    rmSync(files.keyFile);
    writeFileSync(files.certFile, 'not a certificate');
    expect(await watched.reloader.check()).toBe('pending');
    expect(await watched.reloader.check()).toBe('refused');
    expect(watched.logs.find((log) => log.level >= 50)?.problems).toEqual([
      `MAIL_MTA_TLS_CERT: ${files.certFile} is not a PEM file (no "-----BEGIN" line)`,
      `MAIL_MTA_TLS_KEY: cannot read ${files.keyFile} (ENOENT)`,
    ]);
  });

  it('warns once a day from 14 days before the expiry, and says so as an error once it has passed', async () => {
    const day = 24 * 3_600_000;
    const watched = await watch({ now: first.notAfter.getTime() - EXPIRY_WARNING_MS - day });
    const warnings = () => watched.logs.filter((log) => log.level >= 40).map((log) => log.msg);
    await watched.reloader.check();
    expect(warnings()).toEqual([]);
    watched.clock.now = first.notAfter.getTime() - 10 * day - 1;
    await watched.reloader.check();
    await watched.reloader.check();
    expect(warnings()).toEqual([expect.stringContaining('expires in 10 days')]);
    watched.clock.now += day;
    await watched.reloader.check();
    expect(warnings()).toHaveLength(2);
    watched.clock.now = first.notAfter.getTime() + 1;
    await watched.reloader.check();
    expect(watched.logs.filter((log) => log.level >= 50).map((log) => log.msg)).toEqual([expect.stringContaining('has expired')]);
  });

  it('checks by itself every interval until stopped', async () => {
    // Fake timers: the interval passes when the test says so, and "stopped" is no timer left.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      const watched = await watch({ intervalMs: 60_000 });
      install(renewed.cert, renewed.key);
      expect(vi.getTimerCount()).toBe(1);
      await vi.advanceTimersByTimeAsync(60_000);
      await vi.waitFor(() => expect(watched.applied.map((credentials) => credentials.fingerprint)).toEqual([renewed.fingerprint]));
      // The next read is scheduled once the check is done.
      await vi.waitFor(() => expect(vi.getTimerCount()).toBe(1));
      watched.reloader.stop();
      expect(vi.getTimerCount()).toBe(0);
      install(first.cert, first.key);
      await vi.advanceTimersByTimeAsync(10 * 60_000);
      expect(watched.applied).toHaveLength(1);
    } finally {
      vi.useRealTimers();
    }
  });
});
