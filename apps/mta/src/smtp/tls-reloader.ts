// The STARTTLS certificate kept current while the edge runs. Every MAIL_MTA_TLS_RELOAD_INTERVAL
// the edge reads its two files again; when their bytes changed and they make a usable pair
// (tls-credentials.ts, the start's own check) the next handshake presents the new certificate
// (smtp-server's updateSecureContext; sessions already in TLS keep theirs). A renewal therefore
// needs no restart, and an edge nobody restarted does not go on presenting an expired certificate
// — which senders that verify (MTA-STS "enforce", DANE) answer by not delivering to us at all.
//
// A pair that is not usable never replaces the one in use. A renewal tool writes the certificate
// and the key one after the other, so a check can fall between the two: a changed pair counts as
// refused (an error in the log, mail_mta_tls_certificate_files_refused at 1) only when the next
// check finds the same bytes still unusable. How long the certificate in use has left is a metric
// (the alert PosternEdgeCertificateExpiring) and, from 14 days before, a warning in the log once a day.
import type { Logger } from '@postern/shared';
import type { TlsCertificateMetricSet } from '../metrics.ts';
import { checkTlsPair, readTlsFiles, type TlsCredentials, type TlsFiles } from './tls-credentials.ts';

export interface TlsReloaderOptions {
  files: TlsFiles;
  /** The pair the edge started with. */
  current: TlsCredentials;
  /** How often the files are read again; 0 never (the start's pair stays until a restart). */
  intervalMs: number;
  /** Puts a checked pair in use for the next handshakes. */
  apply(credentials: TlsCredentials): void;
  logger: Logger;
  metrics: TlsCertificateMetricSet;
  now?: () => number;
}

export type TlsCheckResult = 'unchanged' | 'applied' | 'pending' | 'refused';

export interface TlsReloader {
  /** Reads the files once now (the timer does this every interval). */
  check(): Promise<TlsCheckResult>;
  stop(): void;
}

/** From this long before notAfter the log warns, once a day. */
export const EXPIRY_WARNING_MS = 14 * 24 * 3_600_000;
const DAY_MS = 24 * 3_600_000;

function identify(credentials: TlsCredentials) {
  return { subject: credentials.subject, fingerprint: credentials.fingerprint, notAfter: credentials.notAfter.toISOString() };
}

/** The same bytes, or both unreadable. */
function same(a: Buffer | null, b: Buffer | null): boolean {
  return a === null ? b === null : b !== null && a.equals(b);
}

export function watchTlsCredentials(options: TlsReloaderOptions): TlsReloader {
  const { files, logger, metrics } = options;
  const now = options.now ?? Date.now;
  let current = options.current;
  /** The unusable bytes the last check saw (cert + key), to tell a write under way from a bad pair. */
  let unusable: { cert: Buffer | null; key: Buffer | null; refused: boolean } | null = null;
  let lastExpiryWarning = Number.NEGATIVE_INFINITY;

  const warnIfExpiring = () => {
    const left = current.notAfter.getTime() - now();
    if (left > EXPIRY_WARNING_MS || now() - lastExpiryWarning < DAY_MS) return;
    lastExpiryWarning = now();
    const days = Math.floor(left / DAY_MS);
    const message =
      left <= 0
        ? 'the STARTTLS certificate has expired: senders that verify certificates (MTA-STS enforce, DANE) do not deliver to this edge; replace MAIL_MTA_TLS_CERT and MAIL_MTA_TLS_KEY'
        : `the STARTTLS certificate expires in ${days} days: renew MAIL_MTA_TLS_CERT and MAIL_MTA_TLS_KEY (the edge reads them again by itself)`;
    logger[left <= 0 ? 'error' : 'warn']({ tls: identify(current) }, message);
  };

  metrics.notAfter.set(current.notAfter.getTime() / 1_000);
  metrics.filesRefused.set(0);
  logger.info({ tls: identify(current), reloadIntervalMs: options.intervalMs }, 'STARTTLS certificate in use');
  warnIfExpiring();

  const check = async (): Promise<TlsCheckResult> => {
    const read = await readTlsFiles(files);
    if (same(read.cert, current.cert) && same(read.key, current.key)) {
      if (unusable !== null) metrics.filesRefused.set(0);
      unusable = null;
      warnIfExpiring();
      return 'unchanged';
    }
    const checked = checkTlsPair(files, read);
    if ('credentials' in checked) {
      const previous = current;
      options.apply(checked.credentials);
      current = checked.credentials;
      unusable = null;
      lastExpiryWarning = Number.NEGATIVE_INFINITY;
      metrics.notAfter.set(current.notAfter.getTime() / 1_000);
      metrics.filesRefused.set(0);
      metrics.reloads.inc({ outcome: 'applied' });
      logger.info({ tls: identify(current), previous: identify(previous) }, 'STARTTLS certificate reloaded: new handshakes present it');
      warnIfExpiring();
      return 'applied';
    }
    if (unusable === null || !same(read.cert, unusable.cert) || !same(read.key, unusable.key)) {
      // Maybe a renewal half written: decided at the next check.
      unusable = { cert: read.cert, key: read.key, refused: false };
      return 'pending';
    }
    if (!unusable.refused) {
      unusable.refused = true;
      metrics.filesRefused.set(1);
      metrics.reloads.inc({ outcome: 'refused' });
      logger.error(
        { problems: checked.problems, inUse: identify(current) },
        'the STARTTLS certificate files changed but cannot be used: the certificate in use is kept; fix MAIL_MTA_TLS_CERT / MAIL_MTA_TLS_KEY',
      );
    }
    warnIfExpiring();
    return 'refused';
  };

  let timer: NodeJS.Timeout | null = null;
  let stopped = false;
  const schedule = () => {
    if (stopped || options.intervalMs <= 0) return;
    timer = setTimeout(() => {
      check()
        .catch((error: unknown) => logger.error({ err: error }, 'STARTTLS certificate check failed; trying again at the next interval'))
        .finally(schedule);
    }, options.intervalMs);
    // Never what keeps the process alive.
    timer.unref();
  };
  schedule();

  return {
    check,
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
  };
}
