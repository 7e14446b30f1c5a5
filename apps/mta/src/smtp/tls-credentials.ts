// The STARTTLS certificate, read and checked once at startup, before any pool or listener opens.
// An unreadable file or a key that does not belong to the certificate fails the start with a
// message naming the variable and the file; otherwise smtp-server would either throw a bare
// ENOENT, or (worse) start and fail every STARTTLS handshake, one sender at a time.
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { ConfigError } from '@postern/shared';

export interface TlsFiles {
  certFile: string;
  keyFile: string;
}

export interface TlsCredentials {
  cert: Buffer;
  key: Buffer;
}

function readPem(variable: string, file: string, problems: string[]): Buffer | null {
  try {
    const pem = readFileSync(file);
    if (!pem.includes('-----BEGIN ')) {
      problems.push(`${variable}: ${file} is not a PEM file (no "-----BEGIN" line)`);
      return null;
    }
    return pem;
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    problems.push(`${variable}: cannot read ${file} (${reason})`);
    return null;
  }
}

/** Both files read and checked as a usable pair; every problem reported at once (ConfigError). */
export function loadTlsCredentials(files: TlsFiles): TlsCredentials {
  const problems: string[] = [];
  const cert = readPem('MAIL_MTA_TLS_CERT', files.certFile, problems);
  const key = readPem('MAIL_MTA_TLS_KEY', files.keyFile, problems);
  if (cert === null || key === null) throw new ConfigError(problems);
  try {
    // The same check a handshake would make, made once now: parses both and matches key to cert.
    createSecureContext({ cert, key });
  } catch (error) {
    throw new ConfigError([
      `MAIL_MTA_TLS_CERT / MAIL_MTA_TLS_KEY: ${files.certFile} and ${files.keyFile} are not a usable certificate and key (${(error as Error).message})`,
    ]);
  }
  return { cert, key };
}
