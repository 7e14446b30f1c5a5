// The STARTTLS certificate, read and checked before any pool or listener opens, and again whenever
// its files change (tls-reloader.ts). An unreadable file or a key that does not belong to the
// certificate fails the start with a message naming the variable and the file; otherwise
// smtp-server would either throw a bare ENOENT, or (worse) start and fail every STARTTLS
// handshake, one sender at a time. The same check decides whether a renewed pair replaces the one
// in use: a pair that would fail handshakes never does.
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import { ConfigError } from '@postern/shared';

export interface TlsFiles {
  certFile: string;
  keyFile: string;
}

export interface TlsCredentials {
  cert: Buffer;
  key: Buffer;
  /** The leaf certificate's notAfter: after it, senders that verify (MTA-STS, DANE) refuse us. */
  notAfter: Date;
  /** SHA-256 of the leaf certificate, as openssl prints it: which certificate is in use, in the logs. */
  fingerprint: string;
  /** The leaf certificate's subject, e.g. "CN=mx1.example.com". */
  subject: string;
}

/** The two files as read (null: unreadable or not PEM, and why in `problems`). */
export type TlsFileBytes = { cert: Buffer | null; key: Buffer | null; problems: string[] };

/** Why a file could not be read. EACCES names the user the process runs as: in the image that is
 *  uid 10001, and a key written by root with mode 0600 (what ACME clients do) is the usual cause,
 *  at start and at every renewal. */
export function unreadableFileProblem(variable: string, file: string, error: NodeJS.ErrnoException, uid = process.getuid?.()): string {
  const why = error.code ?? error.message;
  if (error.code !== 'EACCES' || uid === undefined) return `${variable}: cannot read ${file} (${why})`;
  return `${variable}: cannot read ${file} (EACCES: this process runs as uid ${uid}, which needs read permission on the file and search permission on its folders)`;
}

/** The file's bytes if they were read and look like PEM; otherwise null, and why in `problems`. */
function asPem(variable: string, file: string, read: PromiseSettledResult<Buffer>, problems: string[]): Buffer | null {
  if (read.status === 'rejected') {
    problems.push(unreadableFileProblem(variable, file, read.reason as NodeJS.ErrnoException));
    return null;
  }
  if (read.value.includes('-----BEGIN ')) return read.value;
  problems.push(`${variable}: ${file} is not a PEM file (no "-----BEGIN" line)`);
  return null;
}

/** Both files, read without blocking the event loop (at start, and by the reloader every interval). */
export async function readTlsFiles(files: TlsFiles): Promise<TlsFileBytes> {
  const [cert, key] = await Promise.allSettled([readFile(files.certFile), readFile(files.keyFile)]);
  const problems: string[] = [];
  return {
    cert: asPem('MAIL_MTA_TLS_CERT', files.certFile, cert, problems),
    key: asPem('MAIL_MTA_TLS_KEY', files.keyFile, key, problems),
    problems,
  };
}

/** The pair as a handshake would use it, or every reason it cannot be (nothing thrown). */
export function checkTlsPair(files: TlsFiles, read: TlsFileBytes): { credentials: TlsCredentials } | { problems: string[] } {
  if (read.problems.length > 0 || read.cert === null || read.key === null) return { problems: read.problems };
  const { cert, key } = read;
  try {
    // The same check a handshake would make, made now: parses both and matches key to cert.
    createSecureContext({ cert, key });
    // The first certificate of the file is the leaf a handshake presents; the rest is its chain.
    const leaf = new X509Certificate(cert);
    return {
      credentials: { cert, key, notAfter: new Date(leaf.validTo), fingerprint: leaf.fingerprint256, subject: leaf.subject.replaceAll('\n', ', ') },
    };
  } catch (error) {
    return {
      problems: [
        `MAIL_MTA_TLS_CERT / MAIL_MTA_TLS_KEY: ${files.certFile} and ${files.keyFile} are not a usable certificate and key (${(error as Error).message})`,
      ],
    };
  }
}

/** Both files read and checked as a usable pair; every problem reported at once (ConfigError). */
export async function loadTlsCredentials(files: TlsFiles): Promise<TlsCredentials> {
  const checked = checkTlsPair(files, await readTlsFiles(files));
  if ('problems' in checked) throw new ConfigError(checked.problems);
  return checked.credentials;
}
