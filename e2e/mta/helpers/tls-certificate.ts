// A throwaway self-signed certificate for the STARTTLS tests, made at test time with the openssl
// binary (Node can parse X.509 but not issue it, and a certificate checked into the repo would
// expire one day and fail the suite for no reason of its own).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface TestCertificate {
  certFile: string;
  keyFile: string;
  remove(): void;
}

export function makeSelfSignedCertificate(commonName = 'localhost'): TestCertificate {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'postern-tls-'));
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${commonName}`, '-days', '1', '-keyout', keyFile, '-out', certFile],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  return { certFile, keyFile, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
