// The TXT record an operator publishes for a DKIM key (RFC 6376 section 3.6.1):
//   <selector>._domainkey.<domain>  TXT  "v=DKIM1; k=rsa; p=<base64>"
// A TXT record is a list of character-strings of at most 255 bytes each (RFC 1035 3.3.14), and an
// RSA 2048 record is longer than that, so the zone-file line splits the value into several quoted
// strings, which verifiers join back together (RFC 6376 3.6.2.2).
import { DKIM_KEY_TAGS, type DkimKeyType } from './key-pair.ts';

export interface DkimDnsRecord {
  /** <selector>._domainkey.<domain>, without the trailing dot. */
  name: string;
  type: 'TXT';
  /** The record's text as verifiers read it (the strings joined). */
  value: string;
  /** One line for a zone file: the name with its root dot, TXT, the value as quoted 255-byte strings. */
  zoneFileLine: string;
}

const MAX_CHARACTER_STRING = 255;

export function dkimRecordName(domain: string, selector: string): string {
  return `${selector}._domainkey.${domain}`;
}

export function dkimDnsRecord(key: { domain: string; selector: string; keyType: DkimKeyType; publicKey: string }): DkimDnsRecord {
  const name = dkimRecordName(key.domain, key.selector);
  const value = `v=DKIM1; k=${DKIM_KEY_TAGS[key.keyType].k}; p=${key.publicKey}`;
  const strings: string[] = [];
  for (let offset = 0; offset < value.length; offset += MAX_CHARACTER_STRING) strings.push(`"${value.slice(offset, offset + MAX_CHARACTER_STRING)}"`);
  return { name, type: 'TXT', value, zoneFileLine: `${name}. IN TXT ${strings.join(' ')}` };
}
