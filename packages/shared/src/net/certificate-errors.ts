// The errors of a TLS connection whose server certificate the client refused: not trusted (no CA it
// knows issued it, or it is self-signed), out of its dates, or not for the host connected to. They
// are the codes Node gives OpenSSL's verification results, and ERR_TLS_CERT_ALTNAME_INVALID from
// its host name check. Such a refusal says nothing about the statement or the command that was
// waiting for the connection: it is the server's certificate, or what this process was told to
// trust, and it lasts until an operator changes one of them (a renewal by a CA the DSN does not
// name, an expired certificate, a managed provider's CA rotation).
const VERIFY_CODES = new Set([
  'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'CERT_UNTRUSTED', 'CERT_REJECTED', 'INVALID_CA',
  'CERT_SIGNATURE_FAILURE', 'UNABLE_TO_DECRYPT_CERT_SIGNATURE', 'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY',
  'CERT_NOT_YET_VALID', 'CERT_HAS_EXPIRED', 'ERROR_IN_CERT_NOT_BEFORE_FIELD', 'ERROR_IN_CERT_NOT_AFTER_FIELD',
  'CERT_REVOKED', 'CERT_CHAIN_TOO_LONG', 'PATH_LENGTH_EXCEEDED', 'INVALID_PURPOSE', 'HOSTNAME_MISMATCH',
]);

/** The host name check's refusal: the certificate is valid, for other names. */
export const WRONG_HOST_CODE = 'ERR_TLS_CERT_ALTNAME_INVALID';

/** Whether `error` is a refusal of the server's certificate (its `code`). */
export function isCertificateError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (VERIFY_CODES.has(code) || code === WRONG_HOST_CODE);
}
