// mailauth 7.1.0's Author Domain extraction (lib/dmarc/author-domain.js), which its index does not
// export: only what author-domains.ts uses, as the file documents it.
declare module 'mailauth/lib/dmarc/author-domain.js' {
  export function getAuthorDomain(
    headerFrom: string | string[] | null | undefined,
    fromFields?: number,
  ): { domain: string; authorDomain: string; mailboxes: number } | { reason: string; domains: string[]; mailboxes: number };
}
