// A throwaway certificate authority and server certificates it signs, made at test time with the
// openssl binary, for PostgreSQL and Redis over TLS: what a DSN's sslrootcert or MAIL_REDIS_TLS_CA
// names, and what the server presents. Each CA is new, so a second one is "the wrong CA" for the
// first one's certificates. Nothing is checked into the repository (it would expire one day).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface ServerCertificate {
  certFile: string;
  keyFile: string;
  cert: string;
  key: string;
}

export interface TestCa {
  /** The CA's certificate, PEM: what a client is told to trust. */
  caFile: string;
  ca: string;
  /** A server certificate for `names` (DNS names and IP addresses, as subjectAltName), for a new
   *  key or the one in `keyFile` (a server switched to another certificate keeps its key file). */
  issue(commonName: string, names: string[], keyFile?: string): ServerCertificate;
  remove(): void;
}

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

export function makeTestCa(name = 'Postern test CA'): TestCa {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'postern-ca-'));
  const caFile = path.join(dir, 'ca.pem');
  const caKey = path.join(dir, 'ca-key.pem');
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${name}`, '-days', '2', '-keyout', caKey, '-out', caFile]);
  let issued = 0;
  return {
    caFile,
    ca: readFileSync(caFile, 'utf8'),
    issue(commonName, names, existingKey) {
      issued += 1;
      const base = path.join(dir, `server-${issued}`);
      const ext = `${base}.ext`;
      const san = names.map((entry) => (/^[\d.]+$|:/.test(entry) ? `IP:${entry}` : `DNS:${entry}`)).join(',');
      writeFileSync(ext, `subjectAltName=${san}\nextendedKeyUsage=serverAuth\n`);
      const keyFile = existingKey ?? `${base}-key.pem`;
      const key = existingKey ? ['-key', existingKey] : ['-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile];
      openssl(['req', '-new', ...key, '-subj', `/CN=${commonName}`, '-out', `${base}.csr`]);
      openssl(['x509', '-req', '-in', `${base}.csr`, '-CA', caFile, '-CAkey', caKey, '-CAcreateserial', '-days', '1', '-extfile', ext, '-out', `${base}.pem`]);
      const certFile = `${base}.pem`;
      return { certFile, keyFile, cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8') };
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
