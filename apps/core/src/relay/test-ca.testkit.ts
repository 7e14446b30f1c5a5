// A certificate authority made in the test, for MTA-STS: a policy host and MX hosts whose
// certificates verify only once the test trusts this CA (trust() adds it to the process's default
// trust store, as NODE_EXTRA_CA_CERTS does for a whole process; docs/core.md, "MTA-STS").
// Node's crypto makes keys but not certificates: node-forge (a dev dependency) signs them; the
// RSA keys come from node:crypto, which is much faster at it.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import forge from 'node-forge';

export interface TestCertificate {
  /** PEM */
  cert: string;
  /** PEM */
  key: string;
}

export interface TestCa {
  /** The CA's own certificate (PEM). */
  cert: string;
  /** A server certificate signed by the CA, for these DNS names or IP addresses. */
  issue(names: string[]): TestCertificate;
  /** Trust the CA in this process (node:tls's default CA certificates) until the returned function. */
  trust(): () => void;
}

function keyPair(): { privateKey: forge.pki.rsa.PrivateKey; publicKey: forge.pki.rsa.PublicKey; pem: string } {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const key = forge.pki.privateKeyFromPem(pem) as forge.pki.rsa.PrivateKey;
  return { privateKey: key, publicKey: forge.pki.setRsaPublicKey(key.n, key.e), pem };
}

function certificate(subject: string, publicKey: forge.pki.PublicKey, issuer: forge.pki.CertificateField[], extensions: object[]): forge.pki.Certificate {
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKey;
  // Positive, random: two runs never issue the same serial.
  cert.serialNumber = `01${randomBytes(8).toString('hex')}`;
  cert.validity.notBefore = new Date(Date.now() - 3_600_000);
  cert.validity.notAfter = new Date(Date.now() + 86_400_000);
  cert.setSubject([{ name: 'commonName', value: subject }]);
  cert.setIssuer(issuer);
  cert.setExtensions(extensions);
  return cert;
}

export function createTestCa(name = 'Postern test CA'): TestCa {
  const keys = keyPair();
  const ca = certificate(name, keys.publicKey, [{ name: 'commonName', value: name }], [
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
  ]);
  ca.sign(keys.privateKey, forge.md.sha256.create());
  const cert = forge.pki.certificateToPem(ca);
  return {
    cert,
    issue(names) {
      const leafKeys = keyPair();
      const leaf = certificate(names[0] ?? 'localhost', leafKeys.publicKey, ca.subject.attributes, [
        { name: 'basicConstraints', cA: false },
        { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
        { name: 'extKeyUsage', serverAuth: true },
        // An IP address is an iPAddress name (7), anything else a dNSName (2).
        { name: 'subjectAltName', altNames: names.map((value) => (net.isIP(value) ? { type: 7, ip: value } : { type: 2, value })) },
      ]);
      leaf.sign(keys.privateKey, forge.md.sha256.create());
      return { cert: forge.pki.certificateToPem(leaf), key: leafKeys.pem };
    },
    trust() {
      const before = tls.getCACertificates('default');
      tls.setDefaultCACertificates([...before, cert]);
      return () => tls.setDefaultCACertificates(before);
    },
  };
}
